"""ferry.agent.RemoteEnvironment: the command contract an agent runtime's
SSH environment expects, over one held ferry session.

    env = RemoteEnvironment("build-7", "deploy", port=2222)
    env.execute("export X=1; cd /srv")          # state persists
    env.execute("echo $X; pwd")                 # {"output": "1\\n/srv\\n", ...}
    env.sync([("~/.agent/skills", "skills"),    # directory -> remote dir
              ("~/.agent/creds/token", "creds/token")], "~/.agent")
    env.cleanup()
"""

import os
import posixpath
import re
import threading
from collections import defaultdict

from .errors import Error, InvalidArgumentError, NotFoundError, PartialError
from .session import Session

# The library writes this note into the command's stderr on a timeout
# (issue 17 item 8 will make it a result flag only); the runtime adds its
# own text, so it is removed from the output here.
# TODO(issue 17 item 8): drop once ferry_exec no longer writes the note.
_TIMEOUT_NOTE = re.compile(
    rb"ferry: command timed out after [0-9.e+-]+ s; its remote process "
    rb"group was killed\n\Z")


class RemoteEnvironment:
    """Commands and files on one remote host, over one SSH session.

    execute() returns {"output": str, "returncode": int}: stdout and stderr
    merged in arrival order; exported variables, functions, aliases and
    the working directory persist from one call to the next; a cwd that
    cannot be entered gives 126 (and the cwd stays); a timeout gives 124
    and kills the remote process group; interrupt() from another thread
    gives 130 and kills it; a background child that keeps stdout open does
    not hold the call.  options go to ferry.Session (known_hosts,
    host_key_policy, connect_timeout, ssh_config, ...).

    The session runs one call at a time: execute() from two threads at
    once is serialized (the second waits for the first).
    """

    def __init__(self, host, user, cwd="~", timeout=60, port=22,
                 key_path="", **options):
        self.host, self.user, self.port = host, user, port
        self.timeout = timeout
        self._session = Session(host, user=user or None, port=port,
                                key_path=key_path or None, **options)
        self._lock = threading.Lock()
        try:
            # The first command starts the session shell and tells where
            # "~" is (ferry_exec takes "~" literally: issue 17 item 7).
            r = self._session.exec('builtin printf "%s" "$HOME"')
            self.home = r.output.decode("utf-8", "surrogateescape") or None
            self.cwd = r.cwd
            if cwd and cwd != "~":
                r = self._session.exec(":", cwd=self._expand(cwd))
                if r.exit_status == 126:
                    raise NotFoundError(
                        f"ferry.agent: cannot enter the working directory "
                        f"{cwd!r} on {host}: {r.text.strip()}")
                self.cwd = r.cwd
        except BaseException:
            self._session.close()
            raise

    # -- helpers

    def _expand(self, path):
        """A leading ~ or ~/ -> the remote login directory."""
        if path == "~":
            return self.home or "."
        if path.startswith("~/") and self.home:
            return self.home + path[1:]
        return path

    @property
    def session(self):
        """The underlying ferry.Session."""
        return self._session

    # -- commands

    def execute(self, command, cwd="", timeout=None, stdin_data=None):
        """Run command; {"output": str, "returncode": int}.  ferry's own
        failures (connection lost, ...) come back as returncode 255 with
        the message as output, as ssh reports them."""
        if self._session.closed:
            raise Error("ferry.agent: execute after cleanup(): the session "
                        "is closed")
        t = self.timeout if timeout is None else timeout
        try:
            r = self._session.exec(command, cwd=self._expand(cwd) or None,
                                   timeout=t or None, stdin=stdin_data)
        except InvalidArgumentError:
            raise
        except Error as e:
            return {"output": f"ferry: {e}\n", "returncode": 255}
        out = r.output
        if r.timed_out:
            out = _TIMEOUT_NOTE.sub(b"", out)
        if r.cwd:
            self.cwd = r.cwd
        return {"output": out.decode("utf-8", "replace"),
                "returncode": r.exit_status}

    def interrupt(self):
        """Stop the running execute() (from another thread): it returns
        130 once the remote process group is killed."""
        self._session.interrupt()

    # -- files

    def sync(self, mappings, base, delete=False, excludes=(), **options):
        """Push (local path, remote path relative to base) pairs.

        Until ferry_sync takes mappings (TODO: ferry_mapping in
        ferry_sync_opts, issue 17 item 1), the pairs are grouped into
        ferry_sync calls, one per remote directory: a local directory
        mapped to a remote directory becomes the source "dir/" of that
        directory; a file whose remote name is its own basename joins the
        call of its remote parent directory.  A file mapped to another
        name cannot be expressed yet: NotImplementedError names it.  With
        delete=True each remote directory is mirrored (today's only scope,
        not the runtime's tracked deletion: a remote-only file there is
        deleted too), and a mapping below another one's remote directory
        is refused (the outer mirror would delete it).

        Returns the list of SyncReports, one per remote directory; raises
        PartialError (its .reports: all of them) when files failed."""
        groups = defaultdict(list)  # remote dir -> local sources
        for local, remote in mappings:
            local = os.path.expanduser(os.fspath(local))
            rel = posixpath.normpath(remote.strip("/")) if remote.strip(
                "/") else "."
            if rel.startswith("..") or posixpath.isabs(remote):
                raise InvalidArgumentError(
                    f"ferry.agent: remote path {remote!r} of {local!r} must "
                    f"be relative to the base and stay inside it")
            if os.path.isdir(local):
                groups[rel].append(local.rstrip("/") + "/")
                continue
            name = posixpath.basename(rel)
            if rel == "." or name != os.path.basename(local):
                # TODO(issue 17 item 1): a ferry_mapping {local, remote}
                # in ferry_sync_opts expresses this; use it once it lands.
                raise NotImplementedError(
                    f"ferry.agent: cannot sync {local!r} to {remote!r} yet: "
                    f"a file whose remote name differs from its own needs "
                    f"ferry_sync mappings (issue 17 item 1)")
            groups[posixpath.dirname(rel) or "."].append(local)
        if delete:
            dirs = sorted(groups)
            for a in dirs:
                for b in dirs:
                    if a != b and (a == "." or b.startswith(a + "/")):
                        raise NotImplementedError(
                            f"ferry.agent: with delete, remote directory "
                            f"{b!r} inside {a!r} would be deleted by the "
                            f"mirror of {a!r}; map them apart or sync "
                            f"without delete")
        reports, partial = [], None
        for rel, sources in sorted(groups.items()):
            dest = base if rel == "." else posixpath.join(base, rel)
            try:
                reports.append(self._session.sync(
                    sources, dest, delete=delete, excludes=excludes,
                    **options))
            except PartialError as e:
                reports.append(e.report)
                partial = partial or e
        if partial:
            partial.reports = reports
            raise partial
        return reports

    def pull(self, sources, dest, **options):
        """Bring remote sources (relative to the login directory, or
        "~/...") into the local directory dest; ferry.Session.pull's
        options.  Returns its SyncReport."""
        if isinstance(sources, (str, bytes, os.PathLike)):
            sources = [sources]
        return self._session.pull([self._expand(os.fspath(s))
                                   for s in sources], dest, **options)

    def cleanup(self):
        """Close the session (a running command is interrupted first)."""
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
