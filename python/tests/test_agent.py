"""ferry.agent.RemoteEnvironment: the agent runtime's command contract."""

import os
import subprocess
import threading
import time

import pytest

import ferry
from ferry.agent import RemoteEnvironment
from conftest import pgrep, read, start_sshd, stop_sshd, write


def make_env(sshd, **kw):
    return RemoteEnvironment("127.0.0.1", None, port=sshd.port,
                             key_path=sshd.key, known_hosts=sshd.known_hosts,
                             host_key_policy="strict", use_agent=False, **kw)


def test_execute_returns_output_and_returncode(env):
    r = env.execute("echo hello; exit 7")
    assert r == {"output": "hello\n", "returncode": 7}
    assert isinstance(r["output"], str)


def test_stdout_and_stderr_are_merged_in_arrival_order(env):
    r = env.execute("printf a; sleep 0.1; printf b >&2; sleep 0.1; "
                    "printf c; sleep 0.1; printf d >&2")
    assert r["output"] == "abcd"


def test_exports_functions_aliases_and_cwd_persist(env, tmp_path):
    r = env.execute(f"export GREETING='hi there'; greet() {{ echo \"fn $1\"; "
                    f"}}; alias ll='echo aliased'; cd {tmp_path}")
    assert r["returncode"] == 0
    r = env.execute('echo "$GREETING"; greet x; ll; pwd')
    assert r["output"] == f"hi there\nfn x\naliased\n{tmp_path}\n"
    assert env.cwd == str(tmp_path)


def test_cd_into_a_missing_directory_is_126_and_keeps_the_cwd(env, tmp_path):
    env.execute(f"cd {tmp_path}")
    r = env.execute("pwd", cwd=str(tmp_path / "missing"))
    assert r["returncode"] == 126
    assert "missing" in r["output"]
    assert env.execute("pwd")["output"] == f"{tmp_path}\n"
    r = env.execute("pwd", cwd="~")
    assert r["output"] == f"{env.home}\n"
    assert env.home == os.path.realpath(os.environ["HOME"])
    assert env.home == env.session.home


def test_timeout_is_124_and_kills_the_remote_process_group(env):
    tag = f"41{os.getpid()}.5"
    t0 = time.monotonic()
    r = env.execute(f"echo begun; sleep {tag} & sleep {tag}; echo no",
                    timeout=1)
    assert time.monotonic() - t0 < 5
    assert r["returncode"] == 124
    assert r["output"] == "begun\n", "nothing of ferry's in the output"
    time.sleep(0.2)
    assert pgrep(f"sleep {tag}") == []


def test_the_default_timeout_applies(sshd):
    e = make_env(sshd, timeout=0.5)
    try:
        assert e.execute("sleep 5")["returncode"] == 124
        assert e.execute("sleep 5", timeout=0.3)["returncode"] == 124
    finally:
        e.cleanup()


def test_interrupt_from_another_thread_is_130_and_kills(env):
    tag = f"42{os.getpid()}.5"
    threading.Timer(0.5, env.interrupt).start()
    t0 = time.monotonic()
    r = env.execute(f"sleep {tag} & sleep {tag}; echo no")
    assert time.monotonic() - t0 < 5
    assert r["returncode"] == 130
    time.sleep(0.2)
    assert pgrep(f"sleep {tag}") == []
    assert env.execute("echo after")["output"] == "after\n"


def test_a_background_child_holding_stdout_does_not_hold_the_call(env):
    tag = f"43{os.getpid()}.5"
    t0 = time.monotonic()
    r = env.execute(f"sleep {tag} & echo started")
    took = time.monotonic() - t0
    try:
        assert r == {"output": "started\n", "returncode": 0}
        assert took < 2, f"took {took:.2f} s"
        assert pgrep(f"sleep {tag}"), "the background child keeps running"
    finally:
        for p in pgrep(f"sleep {tag}"):
            os.kill(p, 15)


def test_stdin_data(env):
    assert env.execute("tr a-z A-Z", stdin_data="shout\n")["output"] == \
        "SHOUT\n"


def test_initial_cwd_and_its_errors(sshd, tmp_path):
    e = make_env(sshd, cwd=str(tmp_path))
    try:
        assert e.execute("pwd")["output"] == f"{tmp_path}\n"
    finally:
        e.cleanup()
    with pytest.raises(ferry.NotFoundError, match="missing"):
        make_env(sshd, cwd=str(tmp_path / "missing"))


def test_concurrent_calls_run_at_once_and_both_are_answered(env):
    out = {}

    def slow():
        out["slow"] = env.execute("sleep 1; echo slow")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    out["echo"] = env.execute("echo fast")
    waited = time.monotonic() - t0
    t.join()
    assert out["slow"]["output"] == "slow\n"
    assert out["echo"]["output"] == "fast\n"
    # Not behind the sleep: each command has its own channel.
    assert waited < 0.5, waited


def agent_tree(home):
    write(f"{home}/skills/git/SKILL.md", "git\n")
    write(f"{home}/skills/py/SKILL.md", "py\n")
    write(f"{home}/skills/py/cache.pyc", "junk\n")
    write(f"{home}/creds/token", "t0k3n\n", mode=0o600)


def test_sync_pushes_mappings_under_one_base(env, tmp_path):
    home = tmp_path / "local"
    agent_tree(home)
    base = str(tmp_path / "remote")
    mappings = [(f"{home}/skills", "skills", ["*.pyc"]),
                (f"{home}/creds/token", "credentials/api-token")]
    r = env.sync(mappings, base)
    assert isinstance(r, ferry.SyncReport)
    assert r.files_uploaded == 3 and r.errors == []
    assert read(f"{base}/skills/git/SKILL.md") == "git\n"
    assert not os.path.exists(f"{base}/skills/py/cache.pyc")
    assert read(f"{base}/credentials/api-token") == "t0k3n\n"
    assert os.stat(f"{base}/credentials/api-token").st_mode & 0o777 == 0o600
    again = env.sync(mappings, base)
    assert (again.files_uploaded, again.round_trips) == (0, 0)


def test_sync_deletes_tracked_files_only(env, tmp_path):
    home = tmp_path / "local"
    agent_tree(home)
    base = str(tmp_path / "remote")
    mappings = [(f"{home}/skills", "skills")]
    env.sync(mappings, base)
    write(f"{base}/skills/made-by-agent.txt", "keep me\n")
    os.remove(f"{home}/skills/py/SKILL.md")
    r = env.sync(mappings, base)
    assert r.files_deleted == 1
    assert not os.path.exists(f"{base}/skills/py/SKILL.md")
    assert read(f"{base}/skills/made-by-agent.txt") == "keep me\n"
    # a verifying push (it lists the remote) keeps it too
    r = env.sync(mappings, base, verify=True)
    assert r.verified and os.path.exists(f"{base}/skills/made-by-agent.txt")
    # mirror, with the listing that finds remote-only files: it goes
    r = env.sync(mappings, base, delete_scope="mirror", verify=True)
    assert not os.path.exists(f"{base}/skills/made-by-agent.txt")
    # no deletion at all
    os.remove(f"{home}/skills/git/SKILL.md")
    env.sync(mappings, base, delete=False)
    assert os.path.exists(f"{base}/skills/git/SKILL.md")


def test_sync_refuses_a_remote_path_outside_the_base(env, tmp_path):
    write(f"{tmp_path}/a", "a\n")
    with pytest.raises(ferry.InvalidArgumentError, match="mapping 0"):
        env.sync([(f"{tmp_path}/a", "../a")], str(tmp_path / "remote"))
    assert not os.path.exists(tmp_path / "remote")
    with pytest.raises(ferry.InvalidArgumentError):
        env.sync([], str(tmp_path / "remote"))


def test_sync_reports_partial_failures(env, tmp_path):
    write(f"{tmp_path}/ok/a", "a\n")
    with pytest.raises(ferry.PartialError) as e:
        env.sync([(f"{tmp_path}/ok", "ok"),
                  (f"{tmp_path}/gone", "gone")], str(tmp_path / "remote"))
    rep = e.value.report
    assert [x.name for x in rep.errors] == ["FERRY_ENOTFOUND"]
    assert rep.errors[0].path.endswith("/gone")
    assert read(f"{tmp_path}/remote/ok/a") == "a\n"


def test_pull_brings_remote_changes_home(env, tmp_path):
    remote = tmp_path / "remote"
    write(f"{remote}/made-by-agent.txt", "result\n")
    r = env.pull(f"{remote}/", str(tmp_path / "home"))
    assert r.files_uploaded == 1
    assert read(tmp_path / "home" / "made-by-agent.txt") == "result\n"


def test_cleanup_closes(sshd):
    e = make_env(sshd)
    e.execute("true")
    e.cleanup()
    assert e.session.closed
    with pytest.raises(ferry.Error, match="closed"):
        e.execute("true")
    e.cleanup()  # twice is fine


def test_a_lost_connection_is_255_with_the_reason(tmp_path):
    own = start_sshd(str(tmp_path / "sshd"))
    e = make_env(own)
    try:
        assert e.execute("echo up")["returncode"] == 0
        pid = int(read(tmp_path / "sshd" / "sshd.pid"))
        # the session's own sshd processes: children of this listener
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                             capture_output=True, text=True)
        children = [int(p) for p in out.stdout.split()]
        assert children
        stop_sshd(str(tmp_path / "sshd"))
        for p in children:
            os.kill(p, 9)
        time.sleep(0.2)
        r = e.execute("echo down")
        assert r["returncode"] == 255
        assert r["output"].startswith("ferry: ")
    finally:
        e.cleanup()
        stop_sshd(str(tmp_path / "sshd"))


def test_reconnect_keeps_the_shell_state(sshd):
    logs = []
    e = make_env(sshd, reconnect=True,
                 log=lambda level, text: logs.append(text))
    try:
        e.execute("cd /tmp && export KEPT=yes && greet() { echo hi; }")
        sshd_pid = int(e.execute("echo $PPID")["output"])
        os.kill(sshd_pid, 9)
        for _ in range(100):
            try:
                os.kill(sshd_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        r = e.execute("echo $KEPT; greet; pwd")
        assert r == {"output": "yes\nhi\n/tmp\n", "returncode": 0}, logs
    finally:
        e.cleanup()
