"""Errors of the client user agent: one clear line each."""

from __future__ import annotations


class UaError(Exception):
    """Something the client could not do; ``str()`` is a one-line explanation."""


class RegistrationError(UaError):
    """The registrar refused (or never answered) our REGISTER."""

    def __init__(self, message: str, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class PageTooLarge(UaError):
    """A page-mode MESSAGE over PJSIP's packet limit (PJSIP_MAX_PKT_LEN, 4000 bytes)."""


class TooManyCalls(UaError):
    """pjsua2-python is built with PJSUA_MAX_CALLS = 4: no fifth session in a process."""


class ChatFailed(UaError):
    """A chat session could not be set up (refused, no usable answer, MSRP failed)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code
