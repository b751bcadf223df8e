"""Exceptions mapped from the FERRY_E* codes of ferry.h.

Every exception is a ferry.Error with .code (the negative FERRY_E* value),
.name ("FERRY_EAUTH") and .message (the library's text, naming the step
that failed).  Where Python has a matching built-in exception the class
derives from it too, so `except TimeoutError` and `except ferry.Error`
both catch ferry.TimeoutError."""

import builtins


class Error(Exception):
    """Any failure reported by libferry."""

    code = -1
    name = "FERRY_ERROR"

    # OSError-derived classes would read (message, code) as (errno, text):
    # hand the base class the message alone.
    def __new__(cls, message="", *args, **kwargs):
        return super().__new__(cls, message)

    def __init__(self, message="", code=None, name=None, report=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name
        self.report = report

    def __str__(self):
        return self.message


class InvalidArgumentError(Error, ValueError):
    code, name = -2, "FERRY_EINVALID"


class NoMemoryError(Error):
    code, name = -3, "FERRY_ENOMEM"


class ConnectionError(Error, builtins.ConnectionError):
    """Connecting failed, or the connection was lost."""
    code, name = -4, "FERRY_ECONN"


class TimeoutError(Error, builtins.TimeoutError):
    code, name = -5, "FERRY_ETIMEOUT"


class HostKeyError(ConnectionError):
    """The host key is unknown (strict) or changed."""
    code, name = -6, "FERRY_EHOSTKEY"


class AuthError(ConnectionError):
    code, name = -7, "FERRY_EAUTH"


class RemoteError(Error):
    code, name = -8, "FERRY_EREMOTE"


class InterruptedError(Error, builtins.InterruptedError):
    """ferry_interrupt (Session.interrupt) stopped the call."""
    code, name = -9, "FERRY_EINTR"


class NotFoundError(Error, FileNotFoundError):
    code, name = -10, "FERRY_ENOTFOUND"


class InputOutputError(Error, OSError):
    code, name = -11, "FERRY_EIO"


class ExistsError(Error, FileExistsError):
    code, name = -12, "FERRY_EEXIST"


class PermissionError(Error, builtins.PermissionError):
    code, name = -13, "FERRY_EPERM"


class ProtocolError(Error):
    code, name = -14, "FERRY_EPROTO"


class UnsupportedError(Error):
    code, name = -15, "FERRY_EUNSUPPORTED"


class PartialError(Error):
    """Some files failed, the others were transferred: .report holds the
    whole SyncReport, .report.errors the per-file failures."""
    code, name = -16, "FERRY_EPARTIAL"


class NoSpaceError(Error, OSError):
    code, name = -17, "FERRY_ENOSPACE"


class ConnectionClosedError(ConnectionError):
    code, name = -18, "FERRY_EEOF"


class LockedError(Error):
    """Another process holds the target's lock."""
    code, name = -19, "FERRY_ELOCKED"


class LimitError(Error):
    """The remote sent more than the listing bounds allow (max_entries...)."""
    code, name = -20, "FERRY_ELIMIT"


_BY_CODE = {c.code: c for c in (
    Error, InvalidArgumentError, NoMemoryError, ConnectionError,
    TimeoutError, HostKeyError, AuthError, RemoteError, InterruptedError,
    NotFoundError, InputOutputError, ExistsError, PermissionError,
    ProtocolError, UnsupportedError, PartialError, NoSpaceError,
    ConnectionClosedError, LockedError, LimitError)}


def from_code(code, message, name=None, report=None):
    """The exception for a FERRY_E* code (ferry.Error for an unknown one)."""
    cls = _BY_CODE.get(code, Error)
    return cls(message, code=code, name=name, report=report)
