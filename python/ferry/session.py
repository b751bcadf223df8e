"""ferry.Session: one SSH connection carrying sync, pull and commands."""

import ctypes
import dataclasses
import os
import threading

from typing import List, Optional

from . import _lib
from ._lib import lib
from .errors import Error, InvalidArgumentError, from_code

EINTR = -9
EPARTIAL = -16

HOST_KEY_POLICIES = {"accept-new": 0, "strict": 1, "off": 2}
DELETE_SCOPES = {"mirror": 0, "tracked": 1}
CHANGE_KINDS = ("mkdir", "upload", "update", "symlink", "delete", "rmdir")


def _b(s):
    """str (file names: the file system encoding) or bytes -> bytes."""
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    return os.fsencode(os.fspath(s))


def _strv(items):
    """A list of str/bytes -> (char *[] kept alive by the caller, count)."""
    items = [_b(i) for i in items]
    if not items:
        return None, 0
    return (ctypes.c_char_p * len(items))(*items), len(items)


def _s(p):
    """const char * from the library -> str (None stays None)."""
    return None if p is None else os.fsdecode(p)


def _as_list(x):
    if x is None:
        return []
    if isinstance(x, (str, bytes, os.PathLike)):
        return [x]
    return list(x)


# ---- results ------------------------------------------------------------------


@dataclasses.dataclass
class FileError:
    """One file that failed in a sync or pull."""
    path: str
    code: int
    name: str  # "FERRY_EPERM"
    message: str


@dataclasses.dataclass
class SyncReport:
    """ferry_sync_report: what a push (or pull) did."""
    files_scanned: int = 0
    dirs_scanned: int = 0
    files_uploaded: int = 0
    files_updated: int = 0
    files_deleted: int = 0
    dirs_created: int = 0
    dirs_deleted: int = 0
    symlinks_created: int = 0
    bytes_sent: int = 0
    round_trips: int = 0
    requests: int = 0
    verified: bool = False
    ms_scan: float = 0.0
    ms_plan: float = 0.0
    ms_transfer: float = 0.0
    ms_manifest: float = 0.0
    ms_total: float = 0.0
    files_delta: int = 0
    bytes_copied: int = 0
    bytes_saved: int = 0
    errors: List[FileError] = dataclasses.field(default_factory=list)
    dry_run: bool = False

    @classmethod
    def _from_c(cls, r, dry_run):
        kw = {n: getattr(r, n) for n in _REPORT_FIELDS}
        kw["verified"] = bool(kw["verified"])
        errors = []
        for i in range(r.error_count):
            e = r.errors[i]
            errors.append(FileError(_s(e.path), e.code,
                                    lib.ferry_error_name(e.code).decode(),
                                    _s(e.message) or ""))
        return cls(errors=errors, dry_run=dry_run, **kw)


_REPORT_FIELDS = tuple(f.name for f in dataclasses.fields(SyncReport)
                       if f.name not in ("errors", "dry_run"))


@dataclasses.dataclass
class Change:
    """One change of a sync or pull (ferry_change), with rsync's itemize
    line."""
    kind: str  # mkdir upload update symlink delete rmdir
    flags: int
    path: str
    link_target: Optional[str]
    size: int
    mode: int
    error: int  # 0 or FERRY_E*
    errmsg: Optional[str]
    itemize: str


@dataclasses.dataclass
class Progress:
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int


@dataclasses.dataclass
class ExecResult:
    """What a command did.  output holds stdout and stderr merged in
    arrival order, unless separate_stderr was asked for (then stderr is in
    .stderr).  exit_status is the command's own, or 124 (timed out), 126
    (cwd could not be entered), 130 (interrupted)."""
    exit_status: int
    output: bytes
    stderr: Optional[bytes]
    cwd: Optional[str]
    timed_out: bool
    interrupted: bool
    duration: float  # seconds
    output_truncated: bool = False
    killed: bool = False  # timed out/interrupted: its processes seen gone

    @property
    def returncode(self):
        return self.exit_status

    @property
    def text(self):
        """output as text (UTF-8, invalid bytes replaced)."""
        return self.output.decode("utf-8", "replace")

    @property
    def stderr_text(self):
        return None if self.stderr is None else self.stderr.decode(
            "utf-8", "replace")


@dataclasses.dataclass
class SessionInfo:
    """What `ferry ping` prints: negotiated algorithms and step times."""
    kex: str
    hostkey_type: str
    cipher_cs: str
    cipher_sc: str
    mac_cs: str
    mac_sc: str
    comp_cs: str
    comp_sc: str
    hostkey_fingerprint: str
    auth_method: str
    target: str
    ms_resolve_connect: float
    ms_handshake: float
    ms_hostkey: float
    ms_auth: float
    home: Optional[str] = None  # the login directory, once known


# ---- callbacks -------------------------------------------------------------------


class _Callbacks:
    """C-callable wrappers of Python callables for one call.  An exception
    raised by a callable never reaches C: the first one is kept, the call is
    interrupted (so that it ends soon), further callbacks are skipped, and
    the exception is raised once the C call has returned."""

    def __init__(self, session):
        self._session = session
        self.exc = None
        self._keep = []

    def _guard(self, fn):
        def run(*args):
            if self.exc is not None:
                return
            try:
                fn(*args)
            except BaseException as e:  # KeyboardInterrupt too
                self.exc = e
                handle = self._session._s
                if handle:
                    lib.ferry_interrupt(handle)
        return run

    def wrap(self, ctype, fn):
        if fn is None:
            return ctype()  # NULL
        c = ctype(self._guard(fn))
        self._keep.append(c)
        return c

    def log(self, fn):
        if fn is None:
            return _lib.LOG_FN()
        return self.wrap(_lib.LOG_FN, lambda ctx, level, msg:
                         fn(level, (msg or b"").decode("utf-8", "replace")))

    def reraise(self):
        if self.exc is not None:
            e, self.exc = self.exc, None
            raise e


def _change_from_c(cp):
    c = cp.contents
    buf = ctypes.create_string_buffer(4096)
    n = lib.ferry_change_itemize(buf, len(buf), cp)
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        lib.ferry_change_itemize(buf, len(buf), cp)
    kind = CHANGE_KINDS[c.kind] if 0 <= c.kind < len(CHANGE_KINDS) else str(
        c.kind)
    return Change(kind, c.flags, _s(c.path), _s(c.link_target), c.size,
                  c.mode, c.error, _s(c.errmsg),
                  buf.value.decode("utf-8", "replace"))


# ---- the session -------------------------------------------------------------------


class Session:
    """An SSH session to one host, for sync, pull and commands.

    The connection options are ssh's, as ferry_session_opts has them::

        with ferry.Session("build-7", user="deploy", port=2222,
                           key_path="~/.ssh/id_ed25519") as s:
            s.sync(["skills/"], "agent/skills", delete=True)
            print(s.exec("ls agent/skills | wc -l").text)

    key_path is one identity file or a list of them (default: ssh-agent,
    then ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa); known_hosts defaults to
    ~/.ssh/known_hosts; host_key_policy is "accept-new" (default), "strict"
    or "off" (tests only); connect_timeout, keepalive and idle_timeout are
    in seconds (None: the library's defaults, 15 s, 15 s, four keepalives;
    keepalive=0 or idle_timeout=0 turn them off); io_timeout (seconds,
    default 30, 0: none) fails an SFTP request no byte moved for; ssh_config
    names a file read as `ssh -F FILE` would for the alias `host`;
    reconnect=True makes a call on a lost connection connect again first
    (see reconnect()).

    Calls from several threads run at once (commands each on their own
    channel; pushes and pulls take turns).  interrupt() from any thread
    stops the calls running then.
    """

    def __init__(self, host, user=None, port=22, key_path=None,
                 known_hosts=None, host_key_policy="accept-new",
                 connect_timeout=None, keepalive=None, idle_timeout=None,
                 compress=False, use_agent=True, passphrase=None,
                 ssh_config=None, io_timeout=None, log=None, connect=True,
                 reconnect=False):
        self._s = None
        # Calls run at once from several threads (the library's session
        # is thread-safe); close() waits for them.  _owners: the threads
        # inside a call (a callback's call on the same session is refused).
        self._cv = threading.Condition()
        self._calls = 0
        self._closing = False
        self._owners = set()
        self._log = log
        self._cbs = _Callbacks(self)
        if host_key_policy not in HOST_KEY_POLICIES:
            raise InvalidArgumentError(
                f"host_key_policy {host_key_policy!r}: use one of "
                + ", ".join(HOST_KEY_POLICIES))
        o = _lib.SessionOpts()
        if lib.ferry_session_opts_init(ctypes.byref(o), o.VERSION):
            raise InvalidArgumentError(lib.ferry_last_errmsg().decode())
        o.host = _b(host)
        o.port = int(port or 22)
        o.user = _b(user)
        keys = [os.path.expanduser(k) for k in _as_list(key_path) if k]
        self._keys, o.identity_count = _strv(keys)
        o.identity_files = self._keys
        o.passphrase = _b(passphrase)
        o.known_hosts = _b(os.path.expanduser(known_hosts)
                           if known_hosts else None)
        o.host_key_policy = HOST_KEY_POLICIES[host_key_policy]
        o.connect_timeout_ms = _ms(connect_timeout)
        o.keepalive_s = _off_or(keepalive, int)
        o.idle_timeout_ms = _off_or(idle_timeout, _ms)
        o.compress = int(bool(compress))
        o.no_agent = int(not use_agent)
        o.log = self._cbs.log(log)
        o.ssh_config = _b(os.path.expanduser(ssh_config)
                          if ssh_config else None)
        o.io_timeout_ms = _off_or(io_timeout, _ms)
        o.reconnect = int(bool(reconnect))
        self._opts = o  # the strings must outlive connect
        handle = ctypes.c_void_p()
        rc = lib.ferry_session_new(ctypes.byref(handle), ctypes.byref(o))
        if rc:
            raise from_code(rc, lib.ferry_last_errmsg().decode(
                "utf-8", "replace"), lib.ferry_error_name(rc).decode())
        self._s = handle.value
        self._connected = False
        self.host, self.user, self.port = host, user, o.port
        if connect:
            self.connect()

    # -- lifetime

    def connect(self):
        """Connect, verify the host key, authenticate (done by the
        constructor unless connect=False; then interrupt() can stop it)."""
        if self._connected:
            return
        try:
            rc = self._call(lib.ferry_session_connect)
            if rc:
                self._raise(rc)
        except BaseException:
            self.close()
            raise
        self._connected = True

    def reconnect(self):
        """After the connection was lost: connect again, keeping the
        session shell's state (exports, functions, aliases, cwd: back on
        the next command when its snapshot survived on the remote) and the
        destinations already verified.  Does nothing while the connection
        is alive.  With reconnect=True the next call does this itself."""
        rc = self._call(lib.ferry_session_reconnect)
        if rc:
            self._raise(rc)

    def close(self):
        """Close the session (a call running in another thread is
        interrupted first).  Idempotent."""
        if not self._s:
            return
        if threading.get_ident() in self._owners:
            raise Error("ferry: close() from inside a callback of a call on "
                        "the same session")
        with self._cv:
            if not self._s:
                return
            self._closing = True
            if self._calls:
                lib.ferry_interrupt(self._s)
            while self._calls:
                self._cv.wait()
            handle, self._s = self._s, None
            self._closing = False
        if handle:
            lib.ferry_session_close(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return not self._s

    # -- the one way into C

    def _call(self, fn, *args, cbs=None):
        """Run one blocking library call (others may run beside it, from
        other threads); raise what a callback raised, then the error the
        code maps to."""
        me = threading.get_ident()
        with self._cv:
            if me in self._owners:
                raise Error("ferry: a session call made from inside a "
                            "callback of another call on the same session")
            if not self._s or self._closing:
                raise Error("ferry: the session is closed")
            self._calls += 1
            self._owners.add(me)
            handle = self._s
        try:
            rc = fn(handle, *args)
        finally:
            with self._cv:
                self._calls -= 1
                self._owners.discard(me)
                self._cv.notify_all()
        if cbs:
            cbs.reraise()
        self._cbs.reraise()  # the session's log callback
        return rc

    def _raise(self, rc, report=None):
        msg = lib.ferry_session_errmsg(self._s) if self._s else None
        msg = msg.decode("utf-8", "replace") if msg else ""
        raise from_code(rc, msg or lib.ferry_strerror(rc).decode(),
                        lib.ferry_error_name(rc).decode(), report)

    def interrupt(self):
        """Stop the call running on this session now (from any thread):
        it returns as interrupted (a command is killed remotely first, exit
        130).  Does nothing when no call is running."""
        with self._cv:
            if self._s and self._calls:
                lib.ferry_interrupt(self._s)

    # -- introspection

    def info(self):
        """The negotiated algorithms, host key and step times."""
        i = _lib.SessionInfo()
        rc = self._call(lambda s: lib.ferry_session_info_get_v(
            ctypes.byref(i), i.VERSION, s))
        if rc:
            self._raise(rc)
        return SessionInfo(**{
            n: (_s(getattr(i, n)) if t is ctypes.c_char_p else getattr(i, n))
            for n, t in _lib.SessionInfo._fields_})

    @property
    def home(self):
        """The remote login directory (str): known without a round trip
        once a command or a sync ran, else asked over SFTP (REALPATH ".").
        """
        p = ctypes.c_char_p()
        rc = self._call(lambda s: lib.ferry_session_home(s, ctypes.byref(p)))
        if rc:
            self._raise(rc)
        return _s(p.value)

    @property
    def round_trips(self):
        """Wire round trips waited for on the SFTP channel so far."""
        return self._call(lib.ferry_session_round_trips)

    # -- sync and pull

    def _sync_opts(self, sources, dest, delete, excludes, exclude_from,
                   checksum, verify, dry_run, force, fsync, max_delete,
                   state_dir, allow_shared_dirs, on_change, on_progress, log,
                   cbs, mappings=None, delete_scope="mirror",
                   max_dir_entries=None, max_entries=None,
                   max_name_bytes=None, streams=None, marker=None):
        o = _lib.SyncOpts()
        if lib.ferry_sync_opts_init(ctypes.byref(o), o.VERSION):
            raise InvalidArgumentError(lib.ferry_last_errmsg().decode())
        keep = []
        srcs, o.source_count = _strv(_as_list(sources))
        o.sources = srcs
        o.dest = _b(dest)
        o.delete_extraneous = int(bool(delete))
        # Python's None: no limit; 0: delete nothing (the CLI's --max-delete)
        o.max_delete = 0 if max_delete is None else (
            -1 if max_delete == 0 else int(max_delete))
        ex, o.exclude_count = _strv(_as_list(excludes))
        o.excludes = ex
        exf, o.exclude_from_count = _strv(
            [os.path.expanduser(f) for f in _as_list(exclude_from)])
        o.exclude_from = exf
        o.dry_run = int(bool(dry_run))
        o.force = int(bool(force))
        o.verify = int(bool(verify))
        o.checksum = int(bool(checksum))
        o.fsync_all = int(bool(fsync))
        o.state_dir = _b(os.path.expanduser(state_dir) if state_dir else None)
        o.allow_shared_dirs = int(bool(allow_shared_dirs))
        if delete_scope not in DELETE_SCOPES:
            raise InvalidArgumentError(
                f"delete_scope {delete_scope!r}: use one of "
                + ", ".join(DELETE_SCOPES))
        o.delete_scope = DELETE_SCOPES[delete_scope]
        o.max_dir_entries = int(max_dir_entries or 0)
        o.max_entries = int(max_entries or 0)
        o.max_name_bytes = int(max_name_bytes or 0)
        o.streams = int(streams or 0)
        o.marker = _b(marker) if marker else None
        if mappings:
            maps = (_lib.Mapping * len(mappings))()
            for m, spec in zip(maps, mappings):
                local, remote, ex = _mapping(spec)
                m.local = _b(os.path.expanduser(os.fspath(local)))
                m.remote = _b(remote)
                exv, m.exclude_count = _strv(_as_list(ex))
                m.excludes = exv
                keep.append(exv)
            o.mappings, o.mapping_count = maps, len(mappings)
            keep.append(maps)
        o.on_change = cbs.wrap(_lib.CHANGE_FN, None if on_change is None else
                               (lambda ctx, cp: on_change(_change_from_c(cp))))
        o.on_progress = cbs.wrap(
            _lib.PROGRESS_FN, None if on_progress is None else
            (lambda ctx, pp: on_progress(Progress(
                pp.contents.bytes_done, pp.contents.bytes_total,
                pp.contents.files_done, pp.contents.files_total))))
        o.log = cbs.log(log if log is not None else self._log)
        keep += [srcs, ex, exf]
        return o, keep

    def _transfer(self, fn, sources, dest, dry_run, **kw):
        if not _as_list(sources) and not kw.get("mappings"):
            raise InvalidArgumentError("ferry: no sources given")
        cbs = _Callbacks(self)
        o, keep = self._sync_opts(sources, dest, dry_run=dry_run, cbs=cbs,
                                  **kw)
        r = _lib.SyncReport()
        rc = self._call(lambda s: fn(s, ctypes.byref(o), ctypes.byref(r)),
                        cbs=None)
        try:
            report = SyncReport._from_c(r, bool(dry_run))
        finally:
            lib.ferry_sync_report_free(ctypes.byref(r))
        del keep
        cbs.reraise()
        if rc:
            self._raise(rc, report)
        return report

    def sync(self, sources, dest, delete=False, excludes=(), checksum=False,
             verify=False, dry_run=False, force=False, fsync=False,
             max_delete=None, exclude_from=(), state_dir=None,
             allow_shared_dirs=False, on_change=None, on_progress=None,
             log=None, mappings=None, delete_scope="mirror",
             max_dir_entries=None, max_entries=None, max_name_bytes=None,
             streams=None, marker=None):
        """Push local sources (rsync's meaning of a trailing slash: "dir/"
        puts dir's contents into dest, "dir" puts dir at dest/dir) to the
        remote directory dest (relative to the login directory unless
        absolute; "~/" is the login directory).  Returns a SyncReport;
        raises PartialError (with .report) when some files failed, another
        ferry.Error when the push failed as a whole.  on_change(Change) is
        called per change, on_progress(Progress) as bytes go out.

        mappings (instead of sources, which is then None or empty): a list
        of (local, remote) or (local, remote, excludes): a file or a
        directory's contents at a path relative to dest, all under one
        manifest and one marker.  delete_scope "tracked" (with delete)
        deletes only what this manifest recorded, never a remote-only
        file; "mirror" (default) anything the sources lack.  streams: SFTP
        channels a large upload may be striped over (None: automatic).
        marker: the name of ferry's identity marker at the top of dest
        (None: ".ferry-id"); give a pull of the tree the same name."""
        return self._transfer(
            lib.ferry_sync, sources, dest, dry_run, delete=delete,
            excludes=excludes, exclude_from=exclude_from, checksum=checksum,
            verify=verify, force=force, fsync=fsync, max_delete=max_delete,
            state_dir=state_dir, allow_shared_dirs=allow_shared_dirs,
            on_change=on_change, on_progress=on_progress, log=log,
            mappings=mappings, delete_scope=delete_scope,
            max_dir_entries=max_dir_entries, max_entries=max_entries,
            max_name_bytes=max_name_bytes, streams=streams, marker=marker)

    def pull(self, sources, dest, delete=False, excludes=(), checksum=False,
             dry_run=False, fsync=False, max_delete=None, exclude_from=(),
             on_change=None, on_progress=None, log=None,
             max_dir_entries=None, max_entries=None, max_name_bytes=None,
             marker=None):
        """The reverse of sync: remote sources (same trailing-slash rule)
        into the local directory dest.  In the report files_uploaded counts
        the files brought home and bytes_sent the bytes written locally.
        ferry's marker (".ferry-id", and marker: the name given to the
        sync) and temporary names are never brought home."""
        return self._transfer(
            lib.ferry_pull, sources, os.path.expanduser(os.fspath(dest)),
            dry_run, delete=delete, excludes=excludes,
            exclude_from=exclude_from, checksum=checksum, verify=False,
            force=False, fsync=fsync, max_delete=max_delete, state_dir=None,
            allow_shared_dirs=False, on_change=on_change,
            on_progress=on_progress, log=log,
            max_dir_entries=max_dir_entries, max_entries=max_entries,
            max_name_bytes=max_name_bytes, marker=marker)

    # -- commands

    def exec(self, command, cwd=None, timeout=None, stdin=None, env=None,
             on_output=None, separate_stderr=False, output_cap=0,
             no_snapshot=False):
        """Run command (bash) in the session shell: exported variables,
        functions, aliases and the working directory carry over from one
        command to the next.  cwd: cd there first (relative: to the
        session's cwd); timeout in seconds (then exit 124, the remote
        process group killed); stdin: bytes or str (default: end of file);
        env: a dict (or "NAME=value" strings) for this command only;
        on_output(stream, data): 1 stdout / 2 stderr, bytes, as they arrive
        (then output stays empty).  Returns an ExecResult, also when the
        command timed out (124), could not cd (126) or was interrupted
        (130); raises ferry.Error when it could not be run."""
        cbs = _Callbacks(self)
        o = _lib.ExecOpts()
        if lib.ferry_exec_opts_init(ctypes.byref(o), o.VERSION):
            raise InvalidArgumentError(lib.ferry_last_errmsg().decode())
        o.cwd = _b(cwd) if cwd else None
        if timeout is not None and timeout > 0:
            o.timeout_ms = max(1, int(round(timeout * 1000)))
        if stdin is not None:
            data = stdin.encode() if isinstance(stdin, str) else bytes(stdin)
            sbuf = ctypes.create_string_buffer(data, len(data))
            o.stdin_data = ctypes.cast(sbuf, ctypes.c_void_p)
            o.stdin_len = len(data)
        if env:
            items = env.items() if hasattr(env, "items") else None
            pairs = [f"{k}={v}" for k, v in items] if items else list(env)
            envv, o.env_count = _strv(pairs)
            o.env = envv
        o.on_output = cbs.wrap(_lib.OUTPUT_FN, None if on_output is None else
                               (lambda ctx, stream, data, n: on_output(
                                   stream, ctypes.string_at(data, n))))
        o.separate_stderr = int(bool(separate_stderr))
        o.output_cap = int(output_cap or 0)
        o.no_snapshot = int(bool(no_snapshot))
        cmd = command.encode("utf-8", "surrogateescape") if isinstance(
            command, str) else bytes(command)
        r = _lib.ExecResult()
        rc = self._call(lambda s: lib.ferry_exec(s, cmd, ctypes.byref(o),
                                                 ctypes.byref(r)))
        try:
            res = ExecResult(
                exit_status=r.exit_status,
                output=ctypes.string_at(r.output, r.output_len)
                if r.output else b"",
                stderr=(ctypes.string_at(r.err, r.err_len) if r.err else b"")
                if separate_stderr and on_output is None else None,
                cwd=_s(r.cwd), timed_out=bool(r.timed_out),
                interrupted=bool(r.interrupted),
                duration=r.duration_ms / 1000.0,
                output_truncated=bool(r.output_truncated),
                killed=bool(r.killed))
        finally:
            lib.ferry_exec_result_free(ctypes.byref(r))
        cbs.reraise()
        if rc == EINTR and res.interrupted:
            return res
        if rc:
            self._raise(rc)
        return res

    def prepare(self):
        """Start the session shell now, without waiting (ferry_exec_prepare),
        so that its login bootstrap overlaps other work."""
        rc = self._call(lib.ferry_exec_prepare)
        if rc:
            self._raise(rc)


def _mapping(spec):
    """(local, remote[, excludes]) or {"local":, "remote":, "excludes":}."""
    if hasattr(spec, "keys"):
        return spec["local"], spec["remote"], spec.get("excludes", ())
    spec = tuple(spec)
    if len(spec) == 2:
        return spec[0], spec[1], ()
    if len(spec) == 3:
        return spec
    raise InvalidArgumentError(
        f"ferry: a mapping is (local, remote) or (local, remote, excludes), "
        f"not {spec!r}")


def _ms(seconds):
    return 0 if seconds is None else max(1, int(round(seconds * 1000)))


def _off_or(value, conv):
    """None: the library's default (0); 0 or less: off (-1)."""
    if value is None:
        return 0
    if value <= 0:
        return -1
    return conv(value)
