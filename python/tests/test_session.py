"""ferry.Session against the private sshd: connection options and their
errors, exec results, callbacks, interrupt, sync and pull reports."""

import os
import socket
import subprocess
import threading
import time

import pytest

import ferry
from conftest import closed_port, pgrep, read, write

H = "127.0.0.1"


# ---- connecting -------------------------------------------------------------


def test_connects_with_ssh_options_and_reports_the_session(sshd):
    with ferry.Session(H, **sshd.conn(connect_timeout=5, keepalive=0,
                                      compress=True)) as s:
        i = s.info()
        assert i.hostkey_fingerprint.startswith("SHA256:")
        assert i.auth_method == f"publickey {sshd.key}"
        assert i.target.endswith(f"@{H}:{sshd.port}")
        assert i.comp_cs != "none"
        assert not s.closed
    assert s.closed
    with pytest.raises(ferry.Error, match="closed"):
        s.exec("true")


def test_home_is_the_login_directory_from_sftp_or_the_first_command(sshd):
    want = os.path.realpath(os.environ["HOME"])
    with ferry.Session(H, **sshd.conn()) as s:
        assert s.info().home is None
        assert s.home == want  # a REALPATH "." riding with SFTP's INIT
        assert s.round_trips == 3  # channel open, subsystem, INIT
        assert s.info().home == want
    with ferry.Session(H, **sshd.conn()) as s:
        s.exec("true", cwd="/tmp")
        assert s.home == want and s.info().home == want
        assert s.round_trips == 0  # the command told it: no SFTP at all
        assert s.exec("pwd", cwd="~").text == f"{want}\n"


def test_a_key_the_server_does_not_accept_is_an_auth_error(sshd, tmp_path):
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(key)], check=True)
    with pytest.raises(ferry.AuthError) as e:
        ferry.Session(H, **sshd.conn(key_path=str(key)))
    assert e.value.code == -7 and e.value.name == "FERRY_EAUTH"
    assert "auth" in str(e.value)
    assert isinstance(e.value, ferry.ConnectionError)


def test_an_unknown_host_is_refused_in_strict_mode(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(ferry.HostKeyError) as e:
        ferry.Session(H, **sshd.conn(known_hosts=str(kh)))
    assert "SHA256:" in str(e.value)
    assert kh.read_text() == ""


def test_accept_new_appends_one_line_and_a_changed_key_is_refused(
        sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    with ferry.Session(H, **sshd.conn(known_hosts=str(kh),
                                      host_key_policy="accept-new")):
        pass
    lines = kh.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[{H}]:{sshd.port} ")
    other = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(other)], check=True)
    typ, key = (tmp_path / "k.pub").read_text().split()[:2]
    kh.write_text(f"[{H}]:{sshd.port} {typ} {key}\n")
    before = kh.read_text()
    with pytest.raises(ferry.HostKeyError, match="SHA256:"):
        ferry.Session(H, **sshd.conn(known_hosts=str(kh),
                                     host_key_policy="accept-new"))
    assert kh.read_text() == before


def test_a_closed_port_is_a_connection_error(sshd):
    with pytest.raises(ferry.ConnectionError) as e:
        ferry.Session(H, **sshd.conn(port=closed_port()))
    assert e.value.name == "FERRY_ECONN"
    assert "refused" in str(e.value)


def test_a_silent_port_times_out_at_connect_timeout(sshd):
    ls = socket.socket()
    ls.bind((H, 0))
    ls.listen(1)
    try:
        t0 = time.monotonic()
        with pytest.raises(ferry.TimeoutError) as e:
            ferry.Session(H, **sshd.conn(port=ls.getsockname()[1],
                                         connect_timeout=0.5))
        assert 0.4 < time.monotonic() - t0 < 3
        assert isinstance(e.value, TimeoutError)
    finally:
        ls.close()


def test_a_bad_option_is_an_invalid_argument(sshd):
    with pytest.raises(ferry.InvalidArgumentError, match="host_key_policy"):
        ferry.Session(H, **sshd.conn(host_key_policy="maybe"))


def test_interrupt_stops_a_connect_in_another_thread(sshd):
    ls = socket.socket()
    ls.bind((H, 0))
    ls.listen(1)
    try:
        s = ferry.Session(H, connect=False, **sshd.conn(
            port=ls.getsockname()[1], connect_timeout=20))
        threading.Timer(0.3, s.interrupt).start()
        t0 = time.monotonic()
        with pytest.raises(ferry.InterruptedError):
            s.connect()
        assert time.monotonic() - t0 < 5
        assert s.closed
    finally:
        ls.close()


# ---- exec -------------------------------------------------------------------


def test_exec_result_fields(session, tmp_path):
    r = session.exec(f"cd {tmp_path}; printf 'a\\n'; exit 3")
    assert r.exit_status == 3 == r.returncode
    assert r.output == b"a\n" and r.text == "a\n"
    assert r.cwd == str(tmp_path)
    assert not r.timed_out and not r.interrupted
    assert 0 < r.duration < 10
    assert session.exec("pwd").text == f"{tmp_path}\n"


def test_stdout_and_stderr_merge_in_arrival_order(session):
    r = session.exec("printf 1; sleep 0.1; printf 2 >&2; sleep 0.1; "
                     "printf 3; sleep 0.1; printf 4 >&2")
    assert r.text == "1234"
    assert r.stderr is None


def test_lines_of_stdout_and_stderr_merge_in_arrival_order(session):
    r = session.exec("echo 1; sleep 0.1; echo 2 >&2; sleep 0.1; echo 3; "
                     "sleep 0.1; echo 4 >&2")
    assert r.text == "1\n2\n3\n4\n"


def test_separate_stderr(session):
    r = session.exec("echo out; echo err >&2", separate_stderr=True)
    assert r.output == b"out\n" and r.stderr == b"err\n"
    assert r.stderr_text == "err\n"


def test_binary_output_stays_bytes_and_text_replaces(session):
    r = session.exec(r"printf 'a\000b\377'")
    assert r.output == b"a\x00b\xff"
    assert r.text == "a\x00b\ufffd"


def test_stdin_env_and_cwd_options(session, tmp_path):
    assert session.exec("cat", stdin=b"x\x00y").output == b"x\x00y"
    assert session.exec("wc -c", stdin="héllo").text.strip() == "6"
    r = session.exec('echo "$A $B"', env={"A": "1", "B": "two words"})
    assert r.text == "1 two words\n"
    assert session.exec('echo "[$A]"').text == "[]\n", "env is per command"
    assert session.exec("pwd", cwd=str(tmp_path)).text == f"{tmp_path}\n"
    r = session.exec("pwd", cwd=str(tmp_path / "missing"))
    assert r.exit_status == 126
    assert session.exec("pwd").text == f"{tmp_path}\n"


def test_timeout_is_124_and_kills_the_remote_group(session, tmp_path):
    tag = f"31{os.getpid()}.5"
    t0 = time.monotonic()
    r = session.exec(f"sleep {tag} & sleep {tag}; echo not-reached",
                     timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert r.exit_status == 124 and r.timed_out and not r.interrupted
    assert r.killed
    assert r.output == b"", "the library writes nothing into the output"
    time.sleep(0.2)
    assert pgrep(f"sleep {tag}") == []


def test_interrupt_from_another_thread_is_130_and_kills(session):
    tag = f"32{os.getpid()}.5"
    session.exec("true")  # the login shell has started: the echo is quick
    threading.Timer(1.0, session.interrupt).start()
    t0 = time.monotonic()
    r = session.exec(f"echo started; sleep {tag}; echo not-reached")
    assert time.monotonic() - t0 < 5
    assert r.exit_status == 130 and r.interrupted and not r.timed_out
    assert r.text == "started\n" and r.killed
    time.sleep(0.2)
    assert pgrep(f"sleep {tag}") == []
    assert session.exec("echo next").text == "next\n"


def test_interrupt_while_idle_does_not_hit_the_next_call(session):
    session.interrupt()
    r = session.exec("echo ran")
    assert r.exit_status == 0 and r.text == "ran\n"


def test_on_output_streams_chunks_with_their_stream(session):
    seen = []
    r = session.exec("echo o; sleep 0.1; echo e >&2",
                     on_output=lambda stream, data: seen.append((stream,
                                                                 data)))
    assert r.exit_status == 0 and r.output == b""
    assert b"".join(d for s, d in seen if s == 1) == b"o\n"
    assert b"".join(d for s, d in seen if s == 2) == b"e\n"


class Boom(Exception):
    pass


def test_an_exception_in_on_output_is_raised_after_the_call(session):
    tag = f"33{os.getpid()}.5"
    session.exec("true")

    def cb(stream, data):
        raise Boom(data)

    t0 = time.monotonic()
    with pytest.raises(Boom):
        session.exec(f"echo x; sleep {tag}", on_output=cb)
    assert time.monotonic() - t0 < 5, "the command was stopped"
    time.sleep(0.2)
    assert pgrep(f"sleep {tag}") == []
    assert session.exec("echo still").text == "still\n"


def test_a_call_from_inside_a_callback_is_refused(session):
    errors = []

    def cb(stream, data):
        try:
            session.exec("true")
        except ferry.Error as e:
            errors.append(str(e))

    session.exec("echo x", on_output=cb)
    assert errors and "inside a callback" in errors[0]


def test_calls_from_threads_run_at_once(session):
    out = {}

    def run(name):
        out[name] = session.exec(f"sleep 0.6; echo {name}").text

    names = ("a", "b", "c", "d")
    ts = [threading.Thread(target=run, args=(n,)) for n in names]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert out == {n: f"{n}\n" for n in names}
    # together, not one after another (4 x 0.6 s)
    assert time.monotonic() - t0 < 2.0


def test_output_cap_keeps_head_and_tail(session):
    r = session.exec("seq 1 10000", output_cap=100)
    assert r.output_truncated and len(r.output) == 100
    assert r.output.startswith(b"1\n2\n") and r.output.endswith(b"10000\n")


# ---- sync and pull ----------------------------------------------------------


def tree(root):
    write(f"{root}/a.txt", "alpha\n")
    write(f"{root}/sub/b.txt", "beta\n")
    write(f"{root}/sub/c.log", "log\n")
    write(f"{root}/secret", "s3\n", mode=0o600)


def test_sync_report_then_a_no_op_costs_no_round_trip(session, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    changes, progress = [], []
    r = session.sync([f"{src}/"], str(dst), on_change=changes.append,
                     on_progress=progress.append)
    assert isinstance(r, ferry.SyncReport)
    assert r.files_uploaded == 4 and r.dirs_created >= 1
    assert r.files_scanned == 4 and r.bytes_sent == 18
    assert r.round_trips > 0 and r.ms_total > 0 and r.errors == []
    assert read(dst / "sub" / "b.txt") == "beta\n"
    assert os.stat(dst / "secret").st_mode & 0o777 == 0o600
    ups = [c for c in changes if c.kind == "upload"]
    assert sorted(c.path for c in ups) == ["a.txt", "secret", "sub/b.txt",
                                           "sub/c.log"]
    assert any(c.itemize == ">f+++++++++ a.txt" for c in changes)
    assert progress and progress[-1].bytes_done == progress[-1].bytes_total
    r = session.sync([f"{src}/"], str(dst))
    assert (r.files_uploaded, r.files_updated, r.round_trips) == (0, 0, 0)


def test_sync_large_file_change_is_a_delta(session, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    os.makedirs(src)
    data = bytearray(os.urandom(3 << 20))
    (src / "big").write_bytes(data)
    r = session.sync([f"{src}/"], str(dst))
    assert r.bytes_sent == len(data) and r.files_delta == 0
    data[1 << 20:(1 << 20) + 100] = os.urandom(100)
    (src / "big").write_bytes(data)
    os.utime(src / "big", (1700000000, 1700000000))
    changes = []
    r = session.sync([f"{src}/"], str(dst), on_change=changes.append)
    assert r.files_delta == 1 and r.bytes_copied > 2 << 20
    assert r.bytes_sent + r.bytes_copied == len(data)
    assert r.bytes_saved == r.bytes_copied
    assert [c.itemize for c in changes] == [">fc.t.....D big"]
    assert (dst / "big").read_bytes() == bytes(data)


def test_sync_options_delete_excludes_dry_run_checksum(session, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    session.sync([f"{src}/"], str(dst), excludes=["*.log"])
    assert not (dst / "sub" / "c.log").exists()
    os.remove(src / "a.txt")
    seen = []
    r = session.sync([f"{src}/"], str(dst), delete=True, dry_run=True,
                     excludes=["*.log"], on_change=seen.append)
    assert r.dry_run and r.files_deleted == 1
    assert [c.itemize for c in seen] == ["*deleting   a.txt"]
    assert (dst / "a.txt").exists(), "a dry run changes nothing"
    r = session.sync([f"{src}/"], str(dst), delete=True, max_delete=0,
                     excludes=["*.log"])
    assert (dst / "a.txt").exists(), "max_delete=0 deletes nothing"
    r = session.sync([f"{src}/"], str(dst), delete=True, excludes=["*.log"])
    assert r.files_deleted == 1 and not (dst / "a.txt").exists()
    # same size and mtime, other content
    write(f"{src}/sub/b.txt", "BETA\n")
    r = session.sync([f"{src}/"], str(dst), excludes=["*.log"],
                     checksum=True)
    assert r.files_uploaded == 1 and read(dst / "sub" / "b.txt") == "BETA\n"
    os.remove(dst / "sub" / "b.txt")
    r = session.sync([f"{src}/"], str(dst), excludes=["*.log"])
    assert r.files_uploaded == 0, "the manifest vouches"
    r = session.sync([f"{src}/"], str(dst), excludes=["*.log"], verify=True)
    assert r.verified and r.files_uploaded == 1
    assert read(dst / "sub" / "b.txt") == "BETA\n"


def test_a_partial_sync_raises_with_the_report(session, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    with pytest.raises(ferry.PartialError) as e:
        session.sync([f"{src}/", str(tmp_path / "no-such-dir")], str(dst))
    rep = e.value.report
    assert rep.files_uploaded == 4
    assert [x.path for x in rep.errors if "no-such-dir" in x.path]
    err = rep.errors[0]
    assert err.name.startswith("FERRY_E") and err.message
    assert e.value.code == -16 and e.value.name == "FERRY_EPARTIAL"


def test_an_exception_in_on_change_is_raised_after_the_sync(session,
                                                            tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)

    def cb(c):
        raise Boom(c.path)

    with pytest.raises((Boom)):
        session.sync([f"{src}/"], str(dst), on_change=cb)
    # the session still works, and a new push converges
    session.sync([f"{src}/"], str(dst))
    assert read(dst / "a.txt") == "alpha\n"


def test_sync_and_pull_with_a_marker_name_of_ones_own(sshd, tmp_path):
    src, dst, back = tmp_path / "src", tmp_path / "dst", tmp_path / "back"
    tree(src)
    with ferry.Session(H, **sshd.conn()) as s:
        s.sync([f"{src}/"], str(dst), marker=".agent-sync", delete=True)
    assert (dst / ".agent-sync").is_file()
    assert not (dst / ".ferry-id").exists()
    with ferry.Session(H, **sshd.conn()) as s:
        r = s.sync([f"{src}/"], str(dst), marker=".agent-sync")
        assert r.verified == 0  # the marker vouches for the manifest
        r = s.pull([f"{dst}/"], str(back), marker=".agent-sync")
        assert r.files_uploaded == 4
        assert not (back / ".agent-sync").exists()
        with pytest.raises(ferry.InvalidArgumentError, match="one name"):
            s.sync([f"{src}/"], str(dst), marker="../outside")
    # wiped and made again: the next session notices and restores
    subprocess.run(["rm", "-rf", str(dst)], check=True)
    os.mkdir(dst)
    with ferry.Session(H, **sshd.conn()) as s:
        r = s.sync([f"{src}/"], str(dst), marker=".agent-sync")
        assert r.verified and r.files_uploaded == 4


def test_pull_brings_the_remote_tree_home(session, tmp_path):
    remote, local = tmp_path / "remote", tmp_path / "local"
    tree(remote)
    seen = []
    r = session.pull([f"{remote}/"], str(local), on_change=seen.append)
    assert r.files_uploaded == 4 and r.errors == []
    assert read(local / "sub" / "c.log") == "log\n"
    assert any(c.itemize == ">f+++++++++ sub/b.txt" for c in seen)
    r = session.pull([f"{remote}/"], str(local))
    assert r.files_uploaded == 0
    write(f"{local}/extra", "x\n")
    session.pull([f"{remote}/"], str(local), delete=True)
    assert not (local / "extra").exists()


def test_pull_of_a_missing_source_with_delete_is_refused(session, tmp_path):
    local = tmp_path / "local"
    write(f"{local}/keep", "k\n")
    with pytest.raises(ferry.Error) as e:
        session.pull([str(tmp_path / "gone") + "/"], str(local), delete=True)
    assert "gone" in str(e.value) or e.value.report.errors
    assert (local / "keep").exists()


def test_sync_of_mappings_with_their_own_excludes(session, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    r = session.sync(None, str(dst), mappings=[
        (f"{src}/sub", "lib", ["*.log"]),
        {"local": f"{src}/secret", "remote": "keys/the-secret"}])
    assert r.files_uploaded == 2
    assert read(dst / "lib" / "b.txt") == "beta\n"
    assert not (dst / "lib" / "c.log").exists()
    assert read(dst / "keys" / "the-secret") == "s3\n"
    with pytest.raises(ferry.InvalidArgumentError, match="delete_scope"):
        session.sync(None, str(dst), mappings=[(f"{src}/a.txt", "a")],
                     delete=True, delete_scope="some")
    with pytest.raises(ferry.InvalidArgumentError, match="mapping is"):
        session.sync(None, str(dst), mappings=[(f"{src}/a.txt",)])
    with pytest.raises(ferry.InvalidArgumentError, match="no sources"):
        session.sync([], str(dst))


def test_the_log_callback_gets_the_library_s_warnings(sshd, tmp_path):
    logs = []
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    os.symlink("/etc/passwd", src / "outside")
    with ferry.Session(H, **sshd.conn(
            log=lambda level, text: logs.append((level, text)))) as s:
        s.sync([f"{src}/"], str(dst))
    assert any("outside" in t for _, t in logs), logs
    assert not (dst / "outside").exists()


def test_an_exception_in_on_progress_is_raised_after_the_sync(session,
                                                              tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tree(src)
    calls = []

    def cb(p):
        calls.append(p)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.sync([f"{src}/"], str(dst), on_progress=cb)
    assert len(calls) == 1, "no callback after the first exception"
    r = session.sync([f"{src}/"], str(dst))
    assert read(dst / "sub" / "b.txt") == "beta\n" and r.errors == []


def test_close_from_another_thread_interrupts_the_running_call(sshd):
    s = ferry.Session(H, **sshd.conn())
    s.exec("true")
    out = {}

    def run():
        out["r"] = s.exec("sleep 30")

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    s.close()
    t.join(10)
    assert time.monotonic() - t0 < 5 and not t.is_alive()
    assert out["r"].exit_status == 130 and s.closed
