"""PostgreSQL scripts through pglast, i.e. PostgreSQL's own parser (libpg_query).

The parser, not a search for ';', decides where statements end, so semicolons inside strings,
quoted identifiers, comments and dollar-quoted bodies (CREATE FUNCTION ... $$ ...; ... $$) never
split. Each statement's text is cut from the script at the parser's locations (character
offsets), then trimmed to its first and last tokens as the PostgreSQL scanner sees them, so
comments and blanks around it go and the statement runs exactly as written.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from pglast import ast, parser

from goexd.sql.positions import reject_nul, syntax_error

_COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})


@dataclass(frozen=True, slots=True)
class PgStatement:
    text: str
    node: ast.Node  # the RawStmt's statement node (SelectStmt, InsertStmt, ...)


def parse_postgres(script: str) -> list[PgStatement]:
    """Every statement of `script`, in order; InvalidArgument on the first syntax error."""
    reject_nul(script)
    try:
        raw = parser.parse_sql(script)
    except parser.ParseError as err:
        message = str(err.args[0]) if err.args else str(err)
        where = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], int) else None
        raise syntax_error(script, where, message) from None
    if not raw:
        return []
    # Token boundaries (end inclusive, character offsets), comments left out.
    tokens = [(tok.start, tok.end) for tok in parser.scan(script) if tok.name not in _COMMENT_TOKENS]
    starts = [start for start, _ in tokens]
    out: list[PgStatement] = []
    for stmt in raw:
        begin = stmt.stmt_location or 0
        # stmt_len 0 means "to the end of the script" (the last statement, no ';' after it).
        end = begin + stmt.stmt_len if stmt.stmt_len else len(script)
        first = bisect.bisect_left(starts, begin)
        last = bisect.bisect_left(starts, end) - 1
        if first > last or stmt.stmt is None:
            continue
        out.append(PgStatement(script[tokens[first][0] : tokens[last][1] + 1], stmt.stmt))
    return out
