"""SQLite scripts: sqlglot's SQLite tokenizer finds the statements, SQLite judges their syntax.

The tokenizer knows SQLite's quoting ('strings' with '' escapes, "identifiers", [identifiers],
`identifiers`, x'blobs', -- and /* */ comments), so a semicolon token is a real statement
boundary, except inside CREATE TRIGGER ... BEGIN ...; ...; END, which ends only at a semicolon
following "; END" (the rule of SQLite's own sqlite3_complete()). Each statement's text runs from
its first token to its last, exactly as written (comments around it dropped, comments inside
kept). Every statement is then checked by SQLite's parser (sqlite_check.py) before any is
returned, so a syntax error anywhere refuses the whole script.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import ParseError, TokenError

from goexd.domain.errors import InvalidArgument
from goexd.sql.model import SQL_FIELD
from goexd.sql.positions import line_col, reject_nul, syntax_error
from goexd.sql.sqlite_check import sqlite_syntax_errors

_DIALECT = SQLite()


class _Tokenizer(SQLite.Tokenizer):
    # sqlglot folds everything after a "command" keyword (VACUUM, EXPLAIN, REPLACE...) up to the
    # next ';' into one string token; goexd needs the real tokens (INTO in VACUUM INTO, a
    # CREATE TRIGGER after EXPLAIN, function calls in REPLACE INTO ... SELECT).
    COMMANDS = set()


# Tokens whose text is quoted: never a keyword, whatever they spell.
_QUOTED = frozenset(
    {
        TokenType.IDENTIFIER,
        TokenType.STRING,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.BYTE_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
    }
)
# Neither parser gives a structured position for these errors, so their messages are read (the
# only regular expressions here, over error messages, never over SQL). sqlglot's tokenizer
# reports an unterminated quote as "Missing <delimiter> from <line>:<offset>".
_MISSING = re.compile(r"^Missing (.+) from \d+:(\d+)$")
# SQLite names the token it stopped at: 'near "X": syntax error', 'unrecognized token: "X"'.
_NEAR = re.compile(r'(?:near|unrecognized token:) "(.*)"')


class _NoCommandFallbackWarning(logging.Filter):
    """sqlglot logs a warning, quoting the SQL, for every statement it keeps as an opaque
    Command (VACUUM, REPLACE INTO, CREATE TRIGGER...); goexd expects those, so they are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_NoCommandFallbackWarning())


@dataclass(frozen=True, slots=True)
class LiteStatement:
    text: str
    tokens: tuple[Token, ...]  # start/end relative to `text` (line/col stay the script's)


def word(token: Token) -> str:
    """The token as an upper-case keyword, or "" when it is quoted text."""
    return "" if token.token_type in _QUOTED else token.text.upper()


def tokenize(script: str) -> list[Token]:
    try:
        return _Tokenizer(dialect=_DIALECT).tokenize(script)
    except TokenError as err:
        found = _MISSING.match(str(err.__cause__ or ""))
        if found:
            opened = int(found.group(2))
            raise syntax_error(script, opened, f"unterminated quoted text: missing {found.group(1)}") from None
        first_error_start = getattr(err, "start", None)
    # SQLite reads an unterminated /* comment as running to the end of the script; so do we.
    try:
        return _Tokenizer(dialect=_DIALECT).tokenize(script + "*/")
    except TokenError:
        pass
    # No exact place: the tokenizer's context window is centred on it unless clipped at the start.
    where = first_error_start + 50 if first_error_start else None
    raise syntax_error(script, where, "the script cannot be tokenized") from None


def parse_sqlite(script: str) -> list[LiteStatement]:
    """Every statement of `script`, in order; InvalidArgument on the first syntax error."""
    reject_nul(script)
    groups = _group(tokenize(script))
    texts = [script[group[0].start : group[-1].end + 1] for group in groups]
    explained = [word(group[0]) == "EXPLAIN" for group in groups]
    verdicts = sqlite_syntax_errors(list(zip(texts, explained, strict=True)))
    for group, verdict in zip(groups, verdicts, strict=True):
        if verdict is not None:
            raise _located(script, group, verdict)
    out: list[LiteStatement] = []
    for text, group in zip(texts, groups, strict=True):
        base = group[0].start
        out.append(LiteStatement(text, tuple(_shift(tok, base) for tok in group)))
    return out


def expression(stmt: LiteStatement) -> exp.Expression | None:
    """sqlglot's tree of one statement, or None where sqlglot's grammar (not SQLite's) fails."""
    try:
        trees = _DIALECT.parser().parse(list(stmt.tokens), stmt.text)
    except ParseError:
        return None
    if len(trees) != 1 or not isinstance(trees[0], exp.Expression):
        return None  # a trigger's body splits into several trees
    return trees[0]


def _group(tokens: list[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = []
    current: list[Token] = []
    trigger = False
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            if trigger and not _ends_trigger(current):
                current.append(tok)
                continue
            if current:
                groups.append(current)
            current, trigger = [], False
            continue
        current.append(tok)
        if not trigger and len(current) <= 6:
            trigger = _starts_trigger(current)
    if current:
        groups.append(current)
    return groups


def _starts_trigger(tokens: list[Token]) -> bool:
    words = [word(tok) for tok in tokens]
    if words[:1] == ["EXPLAIN"]:
        words = words[3:] if words[1:3] == ["QUERY", "PLAN"] else words[1:]
    if words[:1] != ["CREATE"]:
        return False
    rest = words[2:] if words[1:2] in (["TEMP"], ["TEMPORARY"]) else words[1:]
    return rest[:1] == ["TRIGGER"]


def _ends_trigger(tokens: list[Token]) -> bool:
    # "...; END" then this semicolon (sqlite3_complete's rule; CASE ... END; inside a body does
    # not match because its END does not follow a semicolon).
    return len(tokens) >= 2 and tokens[-1].token_type == TokenType.END and tokens[-2].token_type == TokenType.SEMICOLON


def _located(script: str, group: list[Token], message: str) -> InvalidArgument:
    """SQLite's message (which has no position) with the place it names, when that is clear."""
    named = _NEAR.search(message)
    if named:
        candidates = [tok.start for tok in group if script[tok.start : tok.end + 1] == named.group(1)]
        if len(candidates) > 1:
            # The same text more than once: take the one sqlglot's parser stumbles on, if any.
            stumble = _sqlglot_error_offset(script, group)
            candidates = [stumble] if stumble in candidates else []
        if candidates:
            return syntax_error(script, candidates[0], message)
    elif message.startswith("incomplete input"):
        return syntax_error(script, group[-1].end + 1, message)
    line, column = line_col(script, group[0].start)
    return InvalidArgument(SQL_FIELD, f"{message} (in the statement at line {line}, column {column})")


def _sqlglot_error_offset(script: str, group: list[Token]) -> int | None:
    try:
        _DIALECT.parser().parse(group, script)
    except ParseError as err:
        if not err.errors:
            return None
        line, col = err.errors[0].get("line"), err.errors[0].get("col")
        if isinstance(line, int) and isinstance(col, int):
            # sqlglot reports the 1-based line and column of the offending token's last character.
            line_start = 0
            for _ in range(line - 1):
                line_start = script.find("\n", line_start) + 1
            last_char = line_start + col - 1
            for tok in group:
                if tok.end == last_char:
                    return tok.start
    return None


def _shift(tok: Token, base: int) -> Token:
    return Token(tok.token_type, tok.text, tok.line, tok.col, tok.start - base, tok.end - base, tok.comments)
