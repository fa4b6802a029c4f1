"""What a PostgreSQL statement is, from pglast's parse tree (node types and their fields).

Three passes: the statement's node type decides the class; then every function call anywhere in
the tree is checked (pg_read_file() and friends are privileged wherever they appear; nextval()
and setval() change sequences, which ROLLBACK does not undo); then code bodies handed to the
server as strings (DO blocks, CREATE FUNCTION ... AS $$...$$) are scanned with PostgreSQL's own
scanner for the same privileged names, and a function in an untrusted language is privileged.

A body that builds SQL at run time (PL/pgSQL's EXECUTE 'ALTER ' || ...) is privileged: what it runs
is a string goexd never sees (the policy may allow it). Not seen (documented limits): what an
existing user-defined function or procedure does when called, and sequences advanced implicitly
by a column default (an INSERT into a serial column).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

from pglast import ast, parser
from pglast.enums import DiscardMode, ObjectType, ReindexObjectType, TransactionStmtKind, VariableSetKind

from goexd.sql.model import Classified, StatementClass
from goexd.sql.postgres_parse import PgStatement

READ, WRITE, DDL = StatementClass.READ, StatementClass.WRITE, StatementClass.DDL
PRIVILEGED, TRANSACTION, OTHER = StatementClass.PRIVILEGED, StatementClass.TRANSACTION, StatementClass.OTHER

_SERVER_FILE = "reads a file on the database server"
_SERVER_DIR = "lists a directory on the database server"
_SERVER_FILE_WRITE = "changes a file on the database server"
PRIVILEGED_FUNCTIONS: dict[str, str] = {
    "pg_read_file": _SERVER_FILE,
    "pg_read_binary_file": _SERVER_FILE,
    "pg_stat_file": "reads a file's details on the database server",
    "pg_ls_dir": _SERVER_DIR,
    "pg_ls_logdir": _SERVER_DIR,
    "pg_ls_waldir": _SERVER_DIR,
    "pg_ls_tmpdir": _SERVER_DIR,
    "pg_ls_archive_statusdir": _SERVER_DIR,
    "pg_ls_logicalsnapdir": _SERVER_DIR,
    "pg_ls_logicalmapdir": _SERVER_DIR,
    "pg_ls_replslotdir": _SERVER_DIR,
    "lo_import": "reads a file on the database server into a large object",
    "lo_export": "writes a large object to a file on the database server",
    "pg_file_write": _SERVER_FILE_WRITE,
    "pg_file_rename": _SERVER_FILE_WRITE,
    "pg_file_unlink": _SERVER_FILE_WRITE,
    "pg_file_sync": _SERVER_FILE_WRITE,
    "pg_terminate_backend": "ends another session's connection",
    "pg_cancel_backend": "cancels another session's query",
    "pg_reload_conf": "reloads the server's configuration",
    "pg_rotate_logfile": "rotates the server's log file",
    "pg_promote": "promotes a standby server",
    "pg_switch_wal": "forces a switch to a new WAL file",
    "pg_create_restore_point": "creates a named restore point in the WAL",
    "pg_backup_start": "starts an online backup",
    "pg_backup_stop": "stops an online backup",
    "pg_create_physical_replication_slot": "creates a replication slot",
    "pg_create_logical_replication_slot": "creates a replication slot",
    "pg_drop_replication_slot": "drops a replication slot",
}
_DBLINK = "connects to another database server"
# Settings that change who statements run as, or switch triggers and foreign keys off (SET or
# set_config(), which is SET by another name).
_IDENTITY_SETTINGS = {
    "role": "SET ROLE changes the role statements run as",
    "session_authorization": "SET SESSION AUTHORIZATION changes the user statements run as",
    "session_replication_role": "SET session_replication_role can switch triggers and foreign keys off",
}
_SEQUENCE_FUNCTIONS = frozenset({"nextval", "setval"})
_TRANSACTION_SETTINGS = frozenset(
    {
        "TRANSACTION",
        "SESSION CHARACTERISTICS",
        "transaction_isolation",
        "transaction_read_only",
        "transaction_deferrable",
    }
)
_TRUSTED_LANGUAGES = frozenset({"sql", "plpgsql", "plperl", "pltcl", "plv8", "plrust"})

# Node types whose class and reason never depend on their fields: (class, reason, transactional).
_FIXED: dict[type[ast.Node], tuple[StatementClass, str, bool]] = {
    ast.VariableShowStmt: (READ, "SHOW reads a setting", True),
    ast.DeclareCursorStmt: (READ, "DECLARE opens a cursor over a query", True),
    ast.FetchStmt: (READ, "FETCH reads rows from a cursor", True),
    ast.InsertStmt: (WRITE, "INSERT adds rows", True),
    ast.UpdateStmt: (WRITE, "UPDATE changes rows", True),
    ast.DeleteStmt: (WRITE, "DELETE removes rows", True),
    ast.MergeStmt: (WRITE, "MERGE inserts, updates or deletes rows", True),
    ast.RefreshMatViewStmt: (WRITE, "REFRESH MATERIALIZED VIEW recomputes a view's rows", True),
    ast.CallStmt: (WRITE, "CALL runs a procedure, which may change data", True),
    ast.ExecuteStmt: (WRITE, "EXECUTE runs a prepared statement, which may change data", True),
    ast.DoStmt: (WRITE, "DO runs an anonymous code block, which may change data", True),
    ast.TruncateStmt: (DDL, "TRUNCATE empties tables", True),
    ast.CommentStmt: (DDL, "COMMENT ON changes an object's comment", True),
    ast.SecLabelStmt: (DDL, "SECURITY LABEL changes an object's label", True),
    ast.DropdbStmt: (PRIVILEGED, "DROP DATABASE deletes a whole database", False),
    ast.CreatedbStmt: (PRIVILEGED, "CREATE DATABASE creates a database outside the session's", False),
    ast.AlterDatabaseStmt: (PRIVILEGED, "ALTER DATABASE changes a whole database", True),
    ast.AlterDatabaseSetStmt: (PRIVILEGED, "ALTER DATABASE changes a whole database's settings", True),
    ast.AlterDatabaseRefreshCollStmt: (PRIVILEGED, "ALTER DATABASE changes a whole database", True),
    ast.CreateRoleStmt: (PRIVILEGED, "CREATE ROLE/USER creates a login or group", True),
    ast.AlterRoleStmt: (PRIVILEGED, "ALTER ROLE/USER changes a role's rights or password", True),
    ast.AlterRoleSetStmt: (PRIVILEGED, "ALTER ROLE/USER changes a role's settings", True),
    ast.DropRoleStmt: (PRIVILEGED, "DROP ROLE/USER deletes a role", True),
    ast.GrantRoleStmt: (PRIVILEGED, "GRANT/REVOKE of a role changes who may act as whom", True),
    ast.GrantStmt: (PRIVILEGED, "GRANT/REVOKE changes who may access objects", True),
    ast.AlterDefaultPrivilegesStmt: (PRIVILEGED, "ALTER DEFAULT PRIVILEGES changes who may access new objects", True),
    ast.AlterSystemStmt: (PRIVILEGED, "ALTER SYSTEM changes the server's configuration", False),
    ast.LoadStmt: (PRIVILEGED, "LOAD loads a shared library into the server", True),
    ast.CreateExtensionStmt: (PRIVILEGED, "CREATE EXTENSION (or LANGUAGE) runs an extension's install script", True),
    ast.AlterExtensionStmt: (PRIVILEGED, "ALTER EXTENSION runs an extension's update script", True),
    ast.AlterExtensionContentsStmt: (PRIVILEGED, "ALTER EXTENSION changes an extension's members", True),
    ast.CreatePLangStmt: (PRIVILEGED, "CREATE LANGUAGE installs a procedural language", True),
    ast.CreateAmStmt: (PRIVILEGED, "CREATE ACCESS METHOD installs server code", True),
    ast.CreateTableSpaceStmt: (PRIVILEGED, "CREATE TABLESPACE uses a directory on the database server", False),
    ast.DropTableSpaceStmt: (PRIVILEGED, "DROP TABLESPACE removes a directory on the database server", False),
    ast.AlterTableSpaceOptionsStmt: (PRIVILEGED, "ALTER TABLESPACE changes server storage", True),
    ast.CreateFdwStmt: (PRIVILEGED, "a foreign-data wrapper reaches outside the database", True),
    ast.AlterFdwStmt: (PRIVILEGED, "a foreign-data wrapper reaches outside the database", True),
    ast.CreateForeignServerStmt: (PRIVILEGED, "a foreign server reaches outside the database", True),
    ast.AlterForeignServerStmt: (PRIVILEGED, "a foreign server reaches outside the database", True),
    ast.CreateUserMappingStmt: (PRIVILEGED, "a user mapping holds credentials for another server", True),
    ast.AlterUserMappingStmt: (PRIVILEGED, "a user mapping holds credentials for another server", True),
    ast.DropUserMappingStmt: (PRIVILEGED, "a user mapping holds credentials for another server", True),
    ast.ImportForeignSchemaStmt: (PRIVILEGED, "IMPORT FOREIGN SCHEMA reaches another server", True),
    ast.CreateSubscriptionStmt: (PRIVILEGED, "CREATE SUBSCRIPTION replicates from another server", False),
    ast.AlterSubscriptionStmt: (PRIVILEGED, "ALTER SUBSCRIPTION changes replication from another server", False),
    ast.DropSubscriptionStmt: (PRIVILEGED, "DROP SUBSCRIPTION stops replication from another server", False),
    ast.CreatePublicationStmt: (PRIVILEGED, "CREATE PUBLICATION exposes tables to replication", True),
    ast.AlterPublicationStmt: (PRIVILEGED, "ALTER PUBLICATION changes which tables are replicated", True),
    ast.CreateEventTrigStmt: (PRIVILEGED, "an event trigger runs on every DDL command", True),
    ast.AlterEventTrigStmt: (PRIVILEGED, "an event trigger runs on every DDL command", True),
    ast.DropOwnedStmt: (PRIVILEGED, "DROP OWNED drops everything a role owns", True),
    ast.ReassignOwnedStmt: (PRIVILEGED, "REASSIGN OWNED gives everything a role owns to another", True),
    ast.LockStmt: (OTHER, "LOCK locks tables until the transaction ends", True),
    ast.ListenStmt: (OTHER, "LISTEN subscribes the session to notifications (at commit)", True),
    ast.UnlistenStmt: (OTHER, "UNLISTEN ends a subscription to notifications (at commit)", True),
    ast.NotifyStmt: (OTHER, "NOTIFY sends a notification (at commit)", True),
    ast.PrepareStmt: (OTHER, "PREPARE stores a statement for EXECUTE", True),
    ast.DeallocateStmt: (OTHER, "DEALLOCATE forgets a prepared statement", True),
    ast.ClosePortalStmt: (OTHER, "CLOSE closes a cursor", True),
    ast.ConstraintsSetStmt: (OTHER, "SET CONSTRAINTS changes when constraints are checked", True),
    ast.CheckPointStmt: (OTHER, "CHECKPOINT forces a checkpoint", True),
}
# Schema changes whose node type is not named Create*/Alter*/Drop*/Define*.
_SCHEMA_NODES = (ast.IndexStmt, ast.ViewStmt, ast.RuleStmt, ast.CompositeTypeStmt)
# Objects whose renaming or change of owner concerns the whole server, not the session's schema.
_SERVER_OBJECTS = {
    ObjectType.OBJECT_DATABASE: "a database",
    ObjectType.OBJECT_ROLE: "a role",
    ObjectType.OBJECT_TABLESPACE: "a tablespace",
    ObjectType.OBJECT_FDW: "a foreign-data wrapper",
    ObjectType.OBJECT_FOREIGN_SERVER: "a foreign server",
    ObjectType.OBJECT_SUBSCRIPTION: "a subscription",
    ObjectType.OBJECT_EVENT_TRIGGER: "an event trigger",
}
_TRANSACTION_REASONS = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_SAVEPOINT: "SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_RELEASE: "RELEASE",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}
_MANAGED = "goexd manages transactions itself"


def classify_postgres(stmt: PgStatement) -> Classified:
    cls, reason, transactional = _by_node(stmt.node, stmt.text)
    found = Classified(stmt.text, cls, reason, transactional)
    return _lasting(stmt.node, _with_bodies(stmt.node, _with_functions(stmt.node, found)))


_NOTIFIES = "delivered to its listeners when the action commits, and no inverse takes a notification back"
_ENUM_VALUE = (
    "PostgreSQL cannot remove a value from an enum type (there is no ALTER TYPE ... DROP VALUE; before "
    "PostgreSQL 12 ADD VALUE cannot even run in a transaction block)"
)


def _lasting(node: ast.Node, found: Classified) -> Classified:
    """What of the statement no inverse can take back once it has committed (Classified.escapes/permanent)."""
    if isinstance(node, ast.AlterEnumStmt) and node.newVal is not None and node.oldVal is None:
        return replace(found, permanent=f"ALTER TYPE ... ADD VALUE {node.newVal!r}: {_ENUM_VALUE}")
    if isinstance(node, ast.NotifyStmt):
        return replace(found, escapes=f"NOTIFY {node.conditionname} sends a notification, {_NOTIFIES}")
    if isinstance(node, ast.DoStmt):  # a body reaches the server as a string: scanned for the call
        called = {name for opt in node.args or () for name in _called_names(_body_text(opt))}
    else:
        called = {function_name(call) for call in walk(node) if isinstance(call, ast.FuncCall)}
    if "pg_notify" not in called:
        return found
    cls = WRITE if found.cls == READ else found.cls  # it sends something: not a read
    reason = "pg_notify() sends a notification (at commit)" if found.cls == READ else found.reason
    return replace(found, cls=cls, reason=reason, escapes=f"pg_notify() sends a notification, {_NOTIFIES}")


def _body_text(opt: object) -> str:
    if isinstance(opt, ast.DefElem) and opt.defname == "as" and isinstance(opt.arg, ast.String):
        return opt.arg.sval or ""
    return ""


def _by_node(node: ast.Node, text: str) -> tuple[StatementClass, str, bool]:
    fixed = _FIXED.get(type(node))
    if fixed is not None:
        return fixed
    if isinstance(node, ast.SelectStmt):
        return _select(node)
    if isinstance(node, ast.ExplainStmt):
        return _explain(node, text)
    if isinstance(node, ast.CopyStmt):
        return _copy(node)
    if isinstance(node, ast.TransactionStmt):
        tag = _TRANSACTION_REASONS.get(node.kind) if node.kind is not None else None
        return TRANSACTION, f"{tag or _tag(text)} controls the transaction; {_MANAGED}", False
    if isinstance(node, ast.VariableSetStmt):
        return _set(node)
    if isinstance(node, ast.VacuumStmt):
        if node.is_vacuumcmd:
            return OTHER, "VACUUM reclaims storage and cannot run inside a transaction", False
        return OTHER, "ANALYZE updates the planner's statistics", True
    if isinstance(node, ast.ReindexStmt):
        return _reindex(node)
    if isinstance(node, ast.ClusterStmt):
        if node.relation is None:
            return OTHER, "CLUSTER of every table cannot run inside a transaction", False
        return DDL, "CLUSTER rewrites a table in index order", True
    if isinstance(node, ast.DiscardStmt):
        if node.target == DiscardMode.DISCARD_ALL:
            return OTHER, "DISCARD ALL resets the session and cannot run inside a transaction", False
        return OTHER, "DISCARD resets part of the session's state", True
    if isinstance(node, ast.RenameStmt | ast.AlterOwnerStmt):
        kind = node.renameType if isinstance(node, ast.RenameStmt) else node.objectType
        what = _SERVER_OBJECTS.get(kind) if kind is not None else None
        if what is not None:
            return PRIVILEGED, f"renaming or changing the owner of {what} affects the whole server", True
        return DDL, f"{_tag(text)} changes the schema", True
    if isinstance(node, ast.IndexStmt | ast.DropStmt) and node.concurrent:
        return DDL, "a CONCURRENTLY index change cannot run inside a transaction", False
    name = type(node).__name__
    if name.startswith(("Create", "Alter", "Drop", "Define")) or isinstance(node, _SCHEMA_NODES):
        return DDL, f"{_tag(text)} changes the schema", True
    return OTHER, _tag(text), True


def _select(node: ast.SelectStmt) -> tuple[StatementClass, str, bool]:
    if node.intoClause is not None:
        return DDL, "SELECT INTO creates a table", True
    if any(isinstance(sub, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt) for sub in walk(node)):
        return WRITE, "a data-modifying WITH changes rows", True
    return READ, "the query reads data", True


def _explain(node: ast.ExplainStmt, text: str) -> tuple[StatementClass, str, bool]:
    analyze = _option(node.options, "analyze")
    if not analyze or node.query is None:
        return READ, "EXPLAIN shows a plan without running the statement", True
    cls, reason, transactional = _by_node(node.query, text)
    return cls, f"EXPLAIN ANALYZE runs the statement: {reason}", transactional


def _option(options: tuple[object, ...] | None, name: str) -> bool:
    """Whether a boolean option (EXPLAIN (ANALYZE), REINDEX (CONCURRENTLY)...) is on."""
    return any(isinstance(opt, ast.DefElem) and opt.defname == name and _true(opt.arg) for opt in options or ())


def _true(arg: object) -> bool:
    """A boolean option's value: absent means true."""
    if arg is None:
        return True
    if isinstance(arg, ast.String):
        return (arg.sval or "").lower() not in {"false", "off", "no", "0"}
    if isinstance(arg, ast.Integer):
        return arg.ival != 0
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    return True


def _copy(node: ast.CopyStmt) -> tuple[StatementClass, str, bool]:
    if node.is_program:
        return PRIVILEGED, "COPY ... PROGRAM runs a shell command on the database server", True
    if node.filename is not None:
        if node.is_from:
            return PRIVILEGED, "COPY FROM a file reads a file on the database server", True
        return PRIVILEGED, "COPY TO a file writes a file on the database server", True
    if node.is_from:
        return WRITE, "COPY FROM STDIN loads rows", True
    return READ, "COPY TO STDOUT reads rows", True


def _set(node: ast.VariableSetStmt) -> tuple[StatementClass, str, bool]:
    name = node.name or ""
    identity = _IDENTITY_SETTINGS.get(name.lower())
    if identity is not None:
        return PRIVILEGED, identity, True
    if name in _TRANSACTION_SETTINGS:
        return TRANSACTION, f"SET TRANSACTION changes the transaction's characteristics; {_MANAGED}", False
    if node.kind == VariableSetKind.VAR_RESET_ALL:
        return OTHER, "RESET ALL resets the session's settings", True
    return OTHER, f"SET changes the session setting {name}", True


def _reindex(node: ast.ReindexStmt) -> tuple[StatementClass, str, bool]:
    concurrently = _option(node.params, "concurrently")
    whole = node.kind in (
        ReindexObjectType.REINDEX_OBJECT_SCHEMA,
        ReindexObjectType.REINDEX_OBJECT_DATABASE,
        ReindexObjectType.REINDEX_OBJECT_SYSTEM,
    )
    if concurrently or whole:
        return OTHER, "REINDEX CONCURRENTLY or of a schema/database cannot run inside a transaction", False
    return OTHER, "REINDEX rebuilds indexes", True


def _with_functions(node: ast.Node, found: Classified) -> Classified:
    sequence: str | None = None
    for call in walk(node):
        if not isinstance(call, ast.FuncCall):
            continue
        name = function_name(call)
        why = _privileged_call(name, call)
        if why is not None and found.cls != PRIVILEGED:
            return replace(found, cls=PRIVILEGED, reason=f"{name}() {why}")
        if name in _SEQUENCE_FUNCTIONS and sequence is None:
            sequence = name
    if sequence is None or found.cls == PRIVILEGED:
        return found
    cls = WRITE if found.cls == READ else found.cls
    reason = f"{sequence}() changes a sequence, which ROLLBACK does not undo"
    if found.cls != READ:
        reason = f"{found.reason}; {reason}"
    return replace(found, cls=cls, reason=reason, transactional=False)


def function_name(call: ast.FuncCall) -> str:
    """The called function's own name (schema dropped), lower case."""
    last = (call.funcname or ())[-1:]
    return last[0].sval.lower() if last and isinstance(last[0], ast.String) and last[0].sval else ""


def _privileged_call(name: str, call: ast.FuncCall | None) -> str | None:
    if name in PRIVILEGED_FUNCTIONS:
        return PRIVILEGED_FUNCTIONS[name]
    if name.startswith("dblink"):
        return _DBLINK
    if name == "set_config":
        first = (call.args or (None,))[0] if call is not None else None
        setting = first.val.sval if isinstance(first, ast.A_Const) and isinstance(first.val, ast.String) else None
        if setting is None or (setting or "").lower() in _IDENTITY_SETTINGS:
            return "can change the role statements run as"
    return None


def _with_bodies(node: ast.Node, found: Classified) -> Classified:
    """DO blocks and function bodies reach the server as strings: scan them, and their language."""
    if found.cls == PRIVILEGED or not isinstance(node, ast.DoStmt | ast.CreateFunctionStmt):
        return found
    options = (node.args if isinstance(node, ast.DoStmt) else node.options) or ()
    language = "plpgsql" if isinstance(node, ast.DoStmt) else "sql"
    bodies: list[str] = []
    for opt in options:
        if not isinstance(opt, ast.DefElem):
            continue
        if opt.defname == "language" and isinstance(opt.arg, ast.String) and opt.arg.sval:
            language = opt.arg.sval.lower()
        elif opt.defname == "as":
            parts = opt.arg if isinstance(opt.arg, tuple) else (opt.arg,)
            bodies += [part.sval for part in parts if isinstance(part, ast.String) and part.sval]
    if language not in _TRUSTED_LANGUAGES:
        untrusted = f"code in the untrusted language {language} runs on the database server"
        return replace(found, cls=PRIVILEGED, reason=untrusted)
    for body in bodies:
        if _builds_sql(body):
            built = "its body builds SQL at run time (EXECUTE), which goexd cannot classify: allow it by policy"
            return replace(found, cls=PRIVILEGED, reason=built)
        for name in _called_names(body):
            why = _privileged_call(name, None) if name != "set_config" else None
            if why is not None:
                return replace(found, cls=PRIVILEGED, reason=f"its body calls {name}(), which {why}")
    return found


def _builds_sql(body: str) -> bool:
    """Whether a body runs SQL made at run time (PL/pgSQL's EXECUTE, a SQL body's EXECUTE of a prepared statement):
    what it runs is a string goexd never sees, so it could be anything the classification refuses elsewhere.
    (EXECUTE FUNCTION/PROCEDURE of a CREATE TRIGGER in a body is not that.)"""
    try:
        tokens = parser.scan(body)
    except parser.ParseError:
        return False
    return any(
        tok.name == "EXECUTE" and following.name not in ("FUNCTION", "PROCEDURE")
        for tok, following in itertools.pairwise([*tokens, tokens[-1]] if tokens else [])
    )


def _called_names(body: str) -> Iterator[str]:
    """Names followed by "(" in a body, as PostgreSQL's scanner reads it (best effort)."""
    try:
        tokens = parser.scan(body)
    except parser.ParseError:
        return
    for tok, following in itertools.pairwise(tokens):
        if following.name == "ASCII_40":  # "("
            yield body[tok.start : tok.end + 1].strip('"').lower()


def walk(node: ast.Node) -> Iterator[ast.Node]:
    """Every node of the tree below and including `node`."""
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            stack.extend(getattr(item, attr) for attr in item)
        elif isinstance(item, tuple):
            stack.extend(item)


def _tag(text: str) -> str:
    """The statement's leading keywords ("CREATE TABLE", "ALTER FOREIGN TABLE"), for reasons."""
    words: list[str] = []
    try:
        tokens = parser.scan(text)
    except parser.ParseError:
        return text.split(None, 1)[0].upper() if text.strip() else "statement"
    for tok in tokens:
        word = text[tok.start : tok.end + 1].upper()
        if tok.kind == "NO_KEYWORD" or word == "IF" or len(words) == 3:
            break
        if word not in {"OR", "REPLACE"}:
            words.append(word)
    return " ".join(words) or "statement"
