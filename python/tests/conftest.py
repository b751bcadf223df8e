"""Fixtures: a private sshd on 127.0.0.1 (the one tests/run.sh started, named
by $FERRY_TEST_SSHD_DIR, or one started here with tests/sshd.sh) and the
connection options for it.  No network beyond loopback, nothing from PyPI."""

import os
import socket
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
SRC = os.path.dirname(PYDIR)
SSHD_SH = os.path.join(SRC, "tests", "sshd.sh")
sys.path.insert(0, PYDIR)

# Manifests of the pushes made here never land in the user's state.
if "FERRY_TEST_TMP" not in os.environ:  # run.sh sets its own
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ferry-py-state.")
os.environ.pop("SSH_AUTH_SOCK", None)
# Under make asan the sanitizer runtime is preloaded for the library under
# test; this process has it now, and the tools the tests run (sshd, pgrep,
# ssh-keygen, pip) must not (pgrep hangs under it): only the Python
# children that load libferry get it back (preload_env).
PRELOAD = os.environ.pop("LD_PRELOAD", None)


class Sshd:
    def __init__(self, d):
        self.dir = d
        with open(os.path.join(d, "port")) as f:
            self.port = int(f.read())
        self.key = os.path.join(d, "id_ed25519")
        self.known_hosts = os.path.join(d, "known_hosts")

    def conn(self, **kw):
        """Session keyword arguments for this server."""
        o = dict(port=self.port, key_path=self.key,
                 known_hosts=self.known_hosts, host_key_policy="strict",
                 use_agent=False)
        o.update(kw)
        return o


def plain_env():
    """The environment for tools (sshd, pip): no sanitizer options."""
    e = dict(os.environ)
    e.pop("ASAN_OPTIONS", None)
    return e


def preload_env():
    """The environment for a Python child that loads libferry."""
    e = dict(os.environ)
    if PRELOAD:
        e["LD_PRELOAD"] = PRELOAD
    return e


def start_sshd(d):
    out = subprocess.run([SSHD_SH, "start", d], capture_output=True,
                         text=True, timeout=60, env=plain_env())
    if out.returncode:
        raise RuntimeError(f"tests/sshd.sh start {d}: {out.stderr}")
    return Sshd(d)


def stop_sshd(d):
    subprocess.run([SSHD_SH, "stop", d], capture_output=True, timeout=60,
                   env=plain_env())


@pytest.fixture(scope="session")
def sshd():
    d = os.environ.get("FERRY_TEST_SSHD_DIR")
    if d and os.path.exists(os.path.join(d, "port")):
        yield Sshd(d)
        return
    d = tempfile.mkdtemp(prefix="ferry-py-sshd.")
    try:
        yield start_sshd(os.path.join(d, "sshd"))
    finally:
        stop_sshd(os.path.join(d, "sshd"))
        subprocess.run(["rm", "-rf", d])


@pytest.fixture
def session(sshd):
    import ferry
    with ferry.Session("127.0.0.1", **sshd.conn()) as s:
        yield s


@pytest.fixture
def env(sshd):
    from ferry.agent import RemoteEnvironment
    e = RemoteEnvironment("127.0.0.1", None, port=sshd.port,
                          key_path=sshd.key, known_hosts=sshd.known_hosts,
                          host_key_policy="strict", use_agent=False)
    yield e
    e.cleanup()


def write(path, text, mode=0o644, mtime=1700000000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def read(path):
    with open(path) as f:
        return f.read()


def pgrep(pattern):
    """pids of processes whose command line holds pattern (none of ours)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
