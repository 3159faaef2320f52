"""User-facing errors: each names the cause and the fix, and the CLI prints it as one paragraph."""

from __future__ import annotations


class ReproError(Exception):
    """An error the user can act on. `fix` says what to do about it."""

    def __init__(self, cause: str, fix: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def paragraph(self) -> str:
        text = f"error: {self.cause}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class UnknownModelError(ReproError, KeyError):
    pass


class ClaimFileError(ReproError, ValueError):
    pass


class DataError(ReproError, ValueError):
    """A dataset file or layout is wrong: the message names the file and what is wrong with it."""
