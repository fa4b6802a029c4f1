"""Syntax errors as goexd reports them: the parser's message and where, in the whole script."""

from __future__ import annotations

from goexd.domain.errors import InvalidArgument
from goexd.sql.model import SQL_FIELD


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of the character at `offset` (clamped to the text)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def syntax_error(script: str, offset: int | None, message: str) -> InvalidArgument:
    """InvalidArgument naming the SQL field, with "(line L, column C)" when the place is known."""
    if offset is None:
        return InvalidArgument(SQL_FIELD, message)
    line, column = line_col(script, offset)
    return InvalidArgument(SQL_FIELD, f"{message} (line {line}, column {column})")


def reject_nul(script: str) -> None:
    """Neither parser can see past a NUL character (both take C strings): refuse it outright."""
    where = script.find("\0")
    if where >= 0:
        raise syntax_error(script, where, "the script contains a NUL character")
