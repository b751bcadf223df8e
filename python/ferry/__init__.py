"""ferry: file sync and remote commands over one SSH session, in Python.

A ctypes layer over libferry.so (found through $FERRY_LIB, then the
installed ferry.pc, then the source tree's build/).  See ferry.Session and
ferry.agent.RemoteEnvironment."""

from ._lib import LibraryError, lib as _clib, path as library_path
from .errors import (AuthError, ConnectionClosedError, ConnectionError,
                     Error, ExistsError, HostKeyError, InputOutputError,
                     InterruptedError, InvalidArgumentError, LimitError, LockedError,
                     NoMemoryError, NoSpaceError, NotFoundError, PartialError,
                     PermissionError, ProtocolError, RemoteError,
                     TimeoutError, UnsupportedError, from_code)
from .session import (Change, ExecResult, FileError, Progress, Session,
                      SessionInfo, SyncReport)

__version__ = "0.1.0"
library_version = _clib.ferry_version().decode()

__all__ = [
    "Session", "ExecResult", "SyncReport", "FileError", "Change", "Progress",
    "SessionInfo", "Error", "AuthError", "HostKeyError", "ConnectionError",
    "ConnectionClosedError", "TimeoutError", "PartialError",
    "InterruptedError", "InvalidArgumentError", "NotFoundError",
    "RemoteError", "PermissionError", "ExistsError", "InputOutputError",
    "ProtocolError", "UnsupportedError", "NoSpaceError", "NoMemoryError",
    "LockedError", "LimitError", "LibraryError", "from_code", "library_path",
    "library_version",
]
