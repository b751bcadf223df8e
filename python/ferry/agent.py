"""ferry.agent.RemoteEnvironment: the command contract an agent runtime's
SSH environment expects, over one held ferry session.

    env = RemoteEnvironment("build-7", "deploy", port=2222)
    env.execute("export X=1; cd /srv")          # state persists
    env.execute("echo $X; pwd")                 # {"output": "1\\n/srv\\n", ...}
    env.sync([("~/.agent/skills", "skills"),    # directory -> remote dir
              ("~/.agent/creds.json", "creds/token.json")],  # file, renamed
             "~/.agent")
    env.cleanup()
"""

import os

from .errors import Error, InvalidArgumentError, NotFoundError
from .session import Session


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

    execute() from several threads runs the commands at once, each on its
    own channel, in one session shell: what one leaves (cwd, exports) is
    what the next one to start sees.
    """

    def __init__(self, host, user, cwd="~", timeout=60, port=22,
                 key_path="", **options):
        self.host, self.user, self.port = host, user, port
        self.timeout = timeout
        self._session = Session(host, user=user or None, port=port,
                                key_path=key_path or None, **options)
        try:
            # The first command starts the session shell, enters cwd ("~"
            # and "~/x" are the login directory) and, on the way, tells
            # the session its login directory (Session.home, no round
            # trip of its own).
            r = self._session.exec(":", cwd=cwd if cwd and cwd != "~"
                                   else None)
            if r.exit_status == 126:
                raise NotFoundError(
                    f"ferry.agent: cannot enter the working directory "
                    f"{cwd!r} on {host}: {r.text.strip()}")
            self.cwd = r.cwd
            self.home = self._session.home
        except BaseException:
            self._session.close()
            raise

    # -- helpers

    def _expand(self, path):
        """A leading ~ or ~/ -> the remote login directory."""
        if not isinstance(path, str):
            return path
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
            r = self._session.exec(command, cwd=cwd or None,
                                   timeout=t or None, stdin=stdin_data)
        except InvalidArgumentError:
            raise
        except Error as e:
            return {"output": f"ferry: {e}\n", "returncode": 255}
        out = r.output
        if r.cwd:
            self.cwd = r.cwd
        return {"output": out.decode("utf-8", "replace"),
                "returncode": r.exit_status}

    def interrupt(self):
        """Stop the running execute() calls (from another thread): they
        return 130 once their remote process groups are killed."""
        self._session.interrupt()

    # -- files

    def sync(self, mappings, base, delete=True, delete_scope="tracked",
             excludes=(), **options):
        """Push the runtime's file set: mappings is a list of (local path,
        remote path relative to base) pairs, or (local, remote, excludes):
        a file lands under the remote name given, a directory's contents
        at the remote path.  One ferry_sync with ferry_mapping entries:
        one manifest and one marker for the whole set under base.

        Deletion is tracked by default: what an earlier sync uploaded and
        is gone locally is deleted, never a file the agent made on the
        remote (those come home by pull).  delete_scope="mirror" makes
        every mapped directory an exact copy; delete=False deletes
        nothing.  options: ferry.Session.sync's (checksum, verify, dry_run,
        on_change, ...).  Returns the SyncReport; raises PartialError
        (with .report) when some files failed."""
        mappings = [tuple(m) if not hasattr(m, "keys") else m
                    for m in mappings]
        if not mappings:
            raise InvalidArgumentError("ferry.agent: sync of no mappings")
        return self._session.sync(None, base, mappings=mappings,
                                  delete=delete, delete_scope=delete_scope,
                                  excludes=excludes, **options)

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
