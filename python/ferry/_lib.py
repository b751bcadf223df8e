"""Finding libferry.so, the ctypes declarations of ferry.h, and the check
that they match the library (ferry_struct_size) before anything is called."""

import ctypes
import os
import shutil
import subprocess

c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_size_t = ctypes.c_size_t
c_uint64 = ctypes.c_uint64
c_double = ctypes.c_double
c_void_p = ctypes.c_void_p
POINTER = ctypes.POINTER

SONAME = "libferry.so.0"

# ---- the structs of lib/ferry.h ---------------------------------------------

LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class SessionOpts(ctypes.Structure):
    VERSION = 4
    _fields_ = [
        ("version", c_uint),
        ("host", c_char_p),
        ("port", c_int),
        ("user", c_char_p),
        ("identity_files", POINTER(c_char_p)),
        ("identity_count", c_size_t),
        ("passphrase", c_char_p),
        ("known_hosts", c_char_p),
        ("host_key_policy", c_int),
        ("connect_timeout_ms", c_int),
        ("keepalive_s", c_int),
        ("idle_timeout_ms", c_int),
        ("compress", c_int),
        ("no_agent", c_int),
        ("log", LOG_FN),
        ("log_ctx", c_void_p),
        ("ssh_config", c_char_p),
        ("io_timeout_ms", c_int),  # version 3
        ("reconnect", c_int),  # version 4
    ]


class SessionInfo(ctypes.Structure):
    VERSION = 2
    _fields_ = [(n, c_char_p) for n in (
        "kex", "hostkey_type", "cipher_cs", "cipher_sc", "mac_cs", "mac_sc",
        "comp_cs", "comp_sc", "hostkey_fingerprint", "auth_method", "target")
    ] + [(n, c_double) for n in (
        "ms_resolve_connect", "ms_handshake", "ms_hostkey", "ms_auth")
    ] + [("home", c_char_p)]  # version 2


class Change(ctypes.Structure):
    _fields_ = [
        ("kind", c_int),
        ("flags", c_uint),
        ("path", c_char_p),
        ("link_target", c_char_p),
        ("size", c_uint64),
        ("mode", ctypes.c_uint32),
        ("error", c_int),
        ("errmsg", c_char_p),
    ]


class Progress(ctypes.Structure):
    _fields_ = [(n, c_uint64) for n in (
        "bytes_done", "bytes_total", "files_done", "files_total")]


class FileError(ctypes.Structure):
    _fields_ = [("path", c_char_p), ("code", c_int), ("message", c_char_p)]


class Mapping(ctypes.Structure):
    _fields_ = [
        ("local", c_char_p),
        ("remote", c_char_p),
        ("excludes", POINTER(c_char_p)),
        ("exclude_count", c_size_t),
    ]


CHANGE_FN = ctypes.CFUNCTYPE(None, c_void_p, POINTER(Change))
PROGRESS_FN = ctypes.CFUNCTYPE(None, c_void_p, POINTER(Progress))


class SyncOpts(ctypes.Structure):
    VERSION = 4
    _fields_ = [
        ("version", c_uint),
        ("sources", POINTER(c_char_p)),
        ("source_count", c_size_t),
        ("dest", c_char_p),
        ("delete_extraneous", c_int),
        ("max_delete", ctypes.c_longlong),
        ("excludes", POINTER(c_char_p)),
        ("exclude_count", c_size_t),
        ("dry_run", c_int),
        ("force", c_int),
        ("verify", c_int),
        ("checksum", c_int),
        ("fsync_all", c_int),
        ("state_dir", c_char_p),
        ("on_change", CHANGE_FN),
        ("on_progress", PROGRESS_FN),
        ("log", LOG_FN),
        ("ctx", c_void_p),
        ("exclude_from", POINTER(c_char_p)),
        ("exclude_from_count", c_size_t),
        # version 2
        ("max_dir_entries", c_uint64),
        ("max_entries", c_uint64),
        ("max_name_bytes", c_uint64),
        ("allow_shared_dirs", c_int),
        ("mappings", POINTER(Mapping)),
        ("mapping_count", c_size_t),
        ("delete_scope", c_int),
        # version 3
        ("streams", c_uint),
        # version 4
        ("marker", c_char_p),
    ]


class SyncReport(ctypes.Structure):
    _fields_ = [(n, c_uint64) for n in (
        "files_scanned", "dirs_scanned", "files_uploaded", "files_updated",
        "files_deleted", "dirs_created", "dirs_deleted", "symlinks_created",
        "bytes_sent", "round_trips", "requests")] + [
        ("verified", c_int)] + [(n, c_double) for n in (
            "ms_scan", "ms_plan", "ms_transfer", "ms_manifest", "ms_total")] + [
        ("error_count", c_size_t),
        ("errors", POINTER(FileError)),
        ("files_delta", c_uint64),
        ("bytes_copied", c_uint64),
        ("bytes_saved", c_uint64),
    ]


OUTPUT_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_void_p, c_size_t)


class ExecOpts(ctypes.Structure):
    VERSION = 1
    _fields_ = [
        ("version", c_uint),
        ("cwd", c_char_p),
        ("timeout_ms", c_int),
        ("stdin_data", c_void_p),
        ("stdin_len", c_size_t),
        ("on_output", OUTPUT_FN),
        ("ctx", c_void_p),
        ("separate_stderr", c_int),
        ("output_cap", c_size_t),
        ("env", POINTER(c_char_p)),
        ("env_count", c_size_t),
        ("no_snapshot", c_int),
    ]


class ExecResult(ctypes.Structure):
    _fields_ = [
        ("exit_status", c_int),
        ("output", c_void_p),  # bytes, may hold NULs: not a c_char_p
        ("output_len", c_size_t),
        ("err", c_void_p),
        ("err_len", c_size_t),
        ("output_truncated", c_int),
        ("cwd", c_char_p),
        ("timed_out", c_int),
        ("interrupted", c_int),
        ("duration_ms", c_double),
        ("killed", c_int),
    ]


# enum ferry_struct: (id, our declaration, version or 0)
STRUCTS = [
    (1, SessionOpts, SessionOpts.VERSION),
    (2, SyncOpts, SyncOpts.VERSION),
    (3, ExecOpts, ExecOpts.VERSION),
    (4, SessionInfo, SessionInfo.VERSION),
    (5, Change, 0),
    (6, Progress, 0),
    (7, FileError, 0),
    (8, SyncReport, 0),
    (9, ExecResult, 0),
    (10, Mapping, 0),
]

# ---- finding and loading the library ----------------------------------------


class LibraryError(ImportError):
    """libferry.so could not be found, or does not match this package."""


def _candidates():
    """Where to look, in order: $FERRY_LIB, the installed ferry.pc's libdir,
    the build tree next to this package (python/../build)."""
    env = os.environ.get("FERRY_LIB")
    if env:
        yield "FERRY_LIB", env
        return  # an explicit choice: never silently fall back
    if shutil.which("pkg-config"):
        try:
            out = subprocess.run(
                ["pkg-config", "--variable=libdir", "ferry"],
                capture_output=True, text=True, timeout=10)
            libdir = out.stdout.strip()
            if out.returncode == 0 and libdir:
                yield "pkg-config ferry", os.path.join(libdir, SONAME)
        except (OSError, subprocess.SubprocessError):
            pass
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.path.normpath(os.path.join(here, "..", "..", "build"))
    yield "build tree", os.path.join(build, "libferry.so")


def _find():
    tried = []
    for how, path in _candidates():
        if os.path.isdir(path):
            path = os.path.join(path, SONAME)
        if os.path.exists(path):
            return path
        tried.append(f"{path} ({how})")
    raise LibraryError(
        "ferry: libferry.so not found; tried " + ", ".join(tried) +
        ". Set FERRY_LIB to the library's path, `make install` (ferry.pc), "
        "or `make` in the source tree")


def _declare(lib):
    S = c_void_p  # ferry_session *, opaque
    sigs = {
        "ferry_struct_size": (c_size_t, [c_int, c_uint]),
        "ferry_version": (c_char_p, []),
        "ferry_strerror": (c_char_p, [c_int]),
        "ferry_error_name": (c_char_p, [c_int]),
        "ferry_last_errmsg": (c_char_p, []),
        "ferry_session_opts_init": (c_int, [POINTER(SessionOpts), c_uint]),
        "ferry_sync_opts_init": (c_int, [POINTER(SyncOpts), c_uint]),
        "ferry_exec_opts_init": (c_int, [POINTER(ExecOpts), c_uint]),
        "ferry_session_new": (c_int, [POINTER(S), POINTER(SessionOpts)]),
        "ferry_session_connect": (c_int, [S]),
        "ferry_session_close": (None, [S]),
        "ferry_session_errmsg": (c_char_p, [S]),
        "ferry_session_info_get_v": (c_int, [POINTER(SessionInfo), c_uint,
                                             S]),
        "ferry_session_home": (c_int, [S, POINTER(c_char_p)]),
        "ferry_session_reconnect": (c_int, [S]),
        "ferry_session_round_trips": (c_uint64, [S]),
        "ferry_interrupt": (None, [S]),
        "ferry_sync": (c_int, [S, POINTER(SyncOpts), POINTER(SyncReport)]),
        "ferry_pull": (c_int, [S, POINTER(SyncOpts), POINTER(SyncReport)]),
        "ferry_sync_report_free": (None, [POINTER(SyncReport)]),
        "ferry_change_itemize": (c_size_t, [c_char_p, c_size_t,
                                            POINTER(Change)]),
        "ferry_exec": (c_int, [S, c_char_p, POINTER(ExecOpts),
                               POINTER(ExecResult)]),
        "ferry_exec_result_free": (None, [POINTER(ExecResult)]),
        "ferry_exec_prepare": (c_int, [S]),
    }
    for name, (res, args) in sigs.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise LibraryError(
                f"ferry: {lib._name} has no {name}: the library is older "
                "than this package (rebuild it, or set FERRY_LIB)") from None
        fn.restype = res
        fn.argtypes = args
    return S


def check_layouts(lib):
    """Every struct declared here must have the library's size; else refuse
    (a wrong layout would corrupt memory, not fail)."""
    bad = []
    for which, cls, version in STRUCTS:
        theirs = lib.ferry_struct_size(which, version)
        ours = ctypes.sizeof(cls)
        if theirs != ours:
            v = f" version {version}" if version else ""
            bad.append(f"{cls.__name__}{v}: library {theirs} bytes, "
                       f"package {ours}")
    if bad:
        raise LibraryError(
            f"ferry: {lib._name} does not match this Python package's struct "
            "layouts (" + "; ".join(bad) + "); use the package from the "
            "same ferry source as the library")


def load(path=None):
    path = path or _find()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise LibraryError(f"ferry: cannot load {path}: {e}") from None
    session_p = _declare(lib)
    check_layouts(lib)
    return lib, session_p, path


lib, SESSION_P, path = load()
