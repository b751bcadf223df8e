"""Finding the library, refusing a library whose structs differ, installing
the package with pip."""

import ctypes
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PYDIR, SRC, plain_env, preload_env

import ferry
from ferry import _lib

PY = sys.executable


def py(code, env=None, cwd=None, path=PYDIR):
    e = preload_env()
    e.pop("FERRY_LIB", None)
    if path:
        e["PYTHONPATH"] = path
    e.update(env or {})
    return subprocess.run([PY, "-c", code], capture_output=True, text=True,
                          env=e, cwd=cwd or "/", timeout=120)


def test_every_struct_has_the_library_size():
    for which, cls, version in _lib.STRUCTS:
        assert _lib.lib.ferry_struct_size(which, version) == \
            ctypes.sizeof(cls), cls.__name__


def test_a_library_with_other_layouts_is_refused_by_name():
    class Fake:
        _name = "/x/libferry.so.0"

        @staticmethod
        def ferry_struct_size(which, version):
            real = _lib.lib.ferry_struct_size(which, version)
            return real + 8 if which == 8 else real

    with pytest.raises(ImportError) as e:
        _lib.check_layouts(Fake)
    msg = str(e.value)
    assert "SyncReport" in msg and "/x/libferry.so.0" in msg
    assert f"package {ctypes.sizeof(_lib.SyncReport)}" in msg


def test_a_missing_function_is_refused_by_name():
    class Old:
        _name = "/old/libferry.so.0"

    with pytest.raises(ImportError, match="no ferry_struct_size"):
        _lib._declare(Old)


def test_ferry_lib_is_used_first():
    so = os.path.realpath(ferry.library_path)
    r = py("import ferry; print(ferry.library_path)", {"FERRY_LIB": so})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == so


def test_ferry_lib_naming_nothing_fails_clearly():
    r = py("import ferry", {"FERRY_LIB": "/nonexistent/libferry.so"})
    assert r.returncode != 0
    assert "/nonexistent/libferry.so (FERRY_LIB)" in r.stderr
    assert "LibraryError" in r.stderr


def test_the_installed_ferry_pc_comes_before_the_build_tree(tmp_path):
    if not shutil.which("pkg-config"):
        pytest.skip("no pkg-config")
    libdir = tmp_path / "lib"
    libdir.mkdir()
    shutil.copy(os.path.realpath(ferry.library_path),
                libdir / "libferry.so.0")
    pc = tmp_path / "pc"
    pc.mkdir()
    (pc / "ferry.pc").write_text(
        f"libdir={libdir}\nName: ferry\nDescription: x\nVersion: 0.1.0\n"
        "Libs: -L${libdir} -lferry\n")
    r = py("import ferry; print(ferry.library_path)",
           {"PKG_CONFIG_PATH": str(pc)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(libdir / "libferry.so.0")


def test_the_build_tree_is_found_without_configuration():
    r = py("import ferry; print(ferry.library_path)",
           {"PKG_CONFIG_PATH": "/nonexistent", "PKG_CONFIG_LIBDIR":
            "/nonexistent"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.path.join(
        os.path.dirname(PYDIR), "build", "libferry.so") or \
        r.stdout.strip().startswith(SRC)


def test_pip_installs_the_package_offline(tmp_path):
    target = tmp_path / "site"
    build = tmp_path / "src"
    shutil.copytree(PYDIR, build, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "build", "tests"))
    r = subprocess.run(
        [PY, "-m", "pip", "install", "--quiet", "--no-index",
         "--no-build-isolation", "--no-deps", "--target", str(target),
         str(build)],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
        env=plain_env())
    if r.returncode and "No module named pip" in r.stderr:
        pytest.skip("pip is not installed")
    assert r.returncode == 0, r.stderr
    assert (target / "ferry" / "agent.py").exists()
    # Outside the source tree: FERRY_LIB tells where the library is.
    r = py("import ferry, ferry.agent; print(ferry.__file__)",
           {"FERRY_LIB": os.path.realpath(ferry.library_path)},
           path=str(target))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(target))


def test_error_classes_follow_the_code_table():
    for code in range(-1, -21, -1):
        e = ferry.from_code(code, "msg")
        assert isinstance(e, ferry.Error)
        assert e.code == code
        assert e.name == _lib.lib.ferry_error_name(code).decode()
        assert str(e) == "msg"
    assert isinstance(ferry.from_code(-5, "x"), TimeoutError)
    assert isinstance(ferry.from_code(-7, "x"), ferry.ConnectionError)
    assert isinstance(ferry.from_code(-6, "x"), ConnectionError)
    assert type(ferry.from_code(-123, "x")) is ferry.Error
