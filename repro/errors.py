"""User-facing errors: each names the cause and the fix, and the CLI prints it as one paragraph."""

from __future__ import annotations


class ReproError(Exception):
    """An error the user can act on. `fix` says what to do about it."""

    def __init__(self, cause: str, fix: str = "", excerpt: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.fix = fix
        self.excerpt = excerpt  # lines of the file at fault, shown as they are (a caret line)

    def paragraph(self) -> str:
        text = f"error: {self.cause}"
        if self.excerpt:
            text += "\n" + self.excerpt.rstrip("\n") + ("\n" if self.fix else "")
        elif self.fix:
            text += " "
        if self.fix:
            text += f"Fix: {self.fix}"
        return text


class UnknownModelError(ReproError, KeyError):
    pass


class ClaimFileError(ReproError, ValueError):
    pass


class DataError(ReproError, ValueError):
    """A dataset file or layout is wrong: the message names the file and what is wrong with it."""


def yaml_syntax_error(
    path: object, text: str, exc: Exception, error: type[ReproError] = ReproError
) -> ReproError:
    """A YAML syntax error as PyYAML's problem mark gives it: the file, line and column and the
    problem in the message, then the offending line with a caret under the column (the line
    where the unfinished construct began, when the problem is the end of the file)."""
    fix = "correct the YAML syntax at the line and column shown."
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    mark = problem_mark or context_mark
    if mark is None:
        return error(f"{path} is not valid YAML: {problem}.", fix)
    what = problem
    if context:
        at = ""
        if context_mark is not None and context_mark is not mark:
            at = f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
        what += f", {context}{at}"
    lines = text.splitlines()
    shown_mark = mark
    if not 0 <= mark.line < len(lines) and context_mark is not None:
        shown_mark = context_mark
    excerpt = ""
    if 0 <= shown_mark.line < len(lines):
        shown = lines[shown_mark.line]
        pad = "".join("\t" if ch == "\t" else " " for ch in shown[: shown_mark.column])
        excerpt = (
            f"  {shown_mark.line + 1} | {shown}\n  {' ' * len(str(shown_mark.line + 1))} | {pad}^"
        )
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}"
    return error(f"{where}: {what}.", fix, excerpt)
