"""What a SQLite statement is.

Every SQLite statement begins with the keyword that names it (SELECT, INSERT, PRAGMA, ATTACH...;
only WITH defers it to after the common table expressions), so the leading keyword from the
tokenizer decides the kind. sqlglot's tree is used for what lies inside: which statement a WITH
leads to, a PRAGMA's name and whether it sets a value, and every function call. Where sqlglot has
no tree (its grammar is not SQLite's: UPDATE OR IGNORE, CREATE TRIGGER, VACUUM and REPLACE INTO
come back unparsed or as an opaque Command; SAVEPOINT comes back as an alias), the same facts
are read from the tokens.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from sqlglot import TokenType, exp

from goexd.sql.model import Classified, StatementClass
from goexd.sql.sqlite_parse import LiteStatement, expression, word

READ, WRITE, DDL = StatementClass.READ, StatementClass.WRITE, StatementClass.DDL
PRIVILEGED, TRANSACTION, OTHER = StatementClass.PRIVILEGED, StatementClass.TRANSACTION, StatementClass.OTHER

PRIVILEGED_FUNCTIONS: dict[str, str] = {
    "load_extension": "loads native code into the process",
    "fts3_tokenizer": "can register native code as a full-text tokenizer",
    "readfile": "reads a file (sqlite3 shell function)",
    "writefile": "writes a file (sqlite3 shell function)",
    "edit": "runs an editor (sqlite3 shell function)",
}
# Pragmas that only report, with or without an argument (a table name, a row limit).
READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_info",
        "index_xinfo",
        "index_list",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
        "database_list",
        "collation_list",
        "function_list",
        "module_list",
        "pragma_list",
        "compile_options",
        "data_version",
        "page_count",
        "freelist_count",
        "stats",
    }
)
# Pragmas that do something rather than set something: (reason, transactional).
ACTION_PRAGMAS: dict[str, tuple[str, bool]] = {
    "optimize": ("PRAGMA optimize runs ANALYZE where useful", True),
    "incremental_vacuum": ("PRAGMA incremental_vacuum frees unused pages", True),
    "shrink_memory": ("PRAGMA shrink_memory frees caches", True),
    "wal_checkpoint": ("PRAGMA wal_checkpoint copies the WAL into the database file", False),
}
# Setting these changes the file, its safety or the process: refused by default.
PRIVILEGED_PRAGMAS: dict[str, str] = {
    "journal_mode": "changes how the database file is written",
    "synchronous": "changes durability on power loss",
    "locking_mode": "can lock every other connection out of the file",
    "writable_schema": "allows editing the schema table directly, which can corrupt the file",
    "schema_version": "overwrites the schema version, which can corrupt the file",
    "trusted_schema": "lets the schema call functions with side effects",
    "cell_size_check": "changes corruption checks",
    "ignore_check_constraints": "turns CHECK constraints off",
    "foreign_keys": "changes foreign-key enforcement",
    "query_only": "changes whether the connection may write",
    "auto_vacuum": "changes the database file's format",
    "page_size": "changes the database file's format",
    "temp_store_directory": "points SQLite at another directory, process-wide",
    "data_store_directory": "points SQLite at another directory, process-wide",
    "soft_heap_limit": "changes a process-wide memory limit",
    "hard_heap_limit": "changes a process-wide memory limit",
}
# Setting these writes the database header, inside the transaction.
WRITE_PRAGMAS = frozenset({"user_version", "application_id"})

_MANAGED = "goexd manages transactions itself"
_TRANSACTION_WORDS = frozenset({"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE"})
_WRITES = {"INSERT": "INSERT adds rows", "REPLACE": "REPLACE adds or replaces rows"}
_WRITES |= {"UPDATE": "UPDATE changes rows", "DELETE": "DELETE removes rows"}
_SCHEMA_OBJECTS = frozenset({"TABLE", "INDEX", "VIEW", "TRIGGER"})
_VERBS = frozenset({"SELECT", "VALUES", *_WRITES})


def classify_sqlite(stmt: LiteStatement) -> Classified:
    tree = expression(stmt)
    cls, reason, transactional = _by_keyword(stmt, tree)
    found = Classified(stmt.text, cls, reason, transactional)
    if found.cls == PRIVILEGED:
        return found
    for name in sorted(_function_names(stmt, tree)):
        if name in PRIVILEGED_FUNCTIONS:
            return replace(found, cls=PRIVILEGED, reason=f"{name}() {PRIVILEGED_FUNCTIONS[name]}")
    return found


def _by_keyword(stmt: LiteStatement, tree: exp.Expression | None) -> tuple[StatementClass, str, bool]:
    words = [word(tok) for tok in stmt.tokens]
    first = words[0]
    if first in ("SELECT", "VALUES"):
        return READ, "the query reads data", True
    if first in _WRITES:
        return WRITE, _WRITES[first], True
    if first == "WITH":
        verb = _with_verb(stmt, tree)
        return (WRITE, _WRITES[verb], True) if verb in _WRITES else (READ, "the query reads data", True)
    if first in ("CREATE", "DROP", "ALTER"):
        objects = [i for i, w in enumerate(words[:5]) if w in _SCHEMA_OBJECTS]
        tag = " ".join(words[: objects[0] + 1]) if objects else first
        return DDL, f"{tag} changes the schema", True
    if first == "PRAGMA":
        return _pragma(stmt, tree)
    if first == "EXPLAIN":
        return READ, "EXPLAIN shows how SQLite would run a statement, without running it", True
    if first in _TRANSACTION_WORDS:
        return TRANSACTION, f"{first} controls the transaction; {_MANAGED}", False
    if first == "ATTACH":
        return PRIVILEGED, "ATTACH opens another database file", False
    if first == "DETACH":
        return PRIVILEGED, "DETACH closes an attached database", False
    if first == "VACUUM":
        if "INTO" in words:
            return PRIVILEGED, "VACUUM INTO writes a copy of the database to another file", False
        return OTHER, "VACUUM rebuilds the database file and cannot run inside a transaction", False
    if first == "REINDEX":
        return OTHER, "REINDEX rebuilds indexes", True
    if first == "ANALYZE":
        return OTHER, "ANALYZE updates the planner's statistics", True
    return OTHER, f"{first or 'the statement'} is not a statement goexd knows", True


def _with_verb(stmt: LiteStatement, tree: exp.Expression | None) -> str:
    """The statement a WITH clause leads to: SELECT, INSERT, REPLACE, UPDATE or DELETE."""
    if isinstance(tree, exp.Insert):
        return "INSERT"
    if isinstance(tree, exp.Update):
        return "UPDATE"
    if isinstance(tree, exp.Delete):
        return "DELETE"
    if isinstance(tree, exp.Query):
        return "SELECT"
    depth = 0  # no tree: the first statement keyword outside the CTEs' parentheses
    for tok in stmt.tokens[1:]:
        if tok.token_type == TokenType.L_PAREN:
            depth += 1
        elif tok.token_type == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and word(tok) in _VERBS:
            return word(tok)
    return "SELECT"


def _pragma(stmt: LiteStatement, tree: exp.Expression | None) -> tuple[StatementClass, str, bool]:
    name, sets = _pragma_parts(stmt, tree)
    if name in READ_PRAGMAS or not sets:
        action = ACTION_PRAGMAS.get(name)
        if action is not None:
            return OTHER, action[0], action[1]
        return READ, f"PRAGMA {name} reads a setting or the schema", True
    if name in ACTION_PRAGMAS:
        return OTHER, ACTION_PRAGMAS[name][0], ACTION_PRAGMAS[name][1]
    if name in PRIVILEGED_PRAGMAS:
        return PRIVILEGED, f"PRAGMA {name} {PRIVILEGED_PRAGMAS[name]}", False
    if name in WRITE_PRAGMAS:
        return WRITE, f"PRAGMA {name} writes the database header", True
    return OTHER, f"PRAGMA {name} sets a connection setting, which ROLLBACK does not undo", False


def _pragma_parts(stmt: LiteStatement, tree: exp.Expression | None) -> tuple[str, bool]:
    """(name, whether a value or argument follows) of PRAGMA [schema.]name [= value | (value)]."""
    if isinstance(tree, exp.Pragma):
        inner = tree.this
        target = inner.this if isinstance(inner, exp.EQ) else inner
        if isinstance(target, exp.Dot):
            target = target.expression
        if isinstance(target, exp.Var | exp.Identifier | exp.Column):
            return target.name.lower(), isinstance(inner, exp.EQ)
    tokens = stmt.tokens[1:]
    if len(tokens) >= 2 and tokens[1].token_type == TokenType.DOT:
        tokens = tokens[2:]
    return (tokens[0].text.lower() if tokens else ""), len(tokens) > 1


def _function_names(stmt: LiteStatement, tree: exp.Expression | None) -> set[str]:
    if tree is not None and not isinstance(tree, exp.Command):
        return {
            (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
            for func in tree.find_all(exp.Func)
        }
    # No tree: a name right before "(" (a table name can look like that: a false alarm, never a miss).
    names: set[str] = set()
    for tok, following in itertools.pairwise(stmt.tokens):
        if following.token_type == TokenType.L_PAREN:
            names.add(tok.text.lower())
    return names
