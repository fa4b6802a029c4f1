"""The journal: SQLite (WAL) record of sessions, resources, actions and every state
transition. It is the audit log and the basis of crash recovery, so each transition is
committed before the side effect it announces.

One connection, serialised by a lock: writes are tiny and SQLite allows one writer anyway.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from goexd import faults
from goexd.diskspace import is_out_of_space, out_of_space
from goexd.domain import codec, plans
from goexd.domain.errors import FailedPrecondition, InternalError
from goexd.domain.models import (
    Action,
    ActionState,
    Resource,
    ResourceKind,
    Session,
    SessionState,
    Timings,
    UndoStrategy,
)
from goexd.domain.names import utf8_text

SCHEMA_VERSION = 12
# Each step takes a journal from version N to N + 1; run in order at open.
_MIGRATIONS = {
    1: "ALTER TABLE actions ADD COLUMN egress TEXT",
    2: "ALTER TABLE actions ADD COLUMN sql TEXT",
    3: "ALTER TABLE resources ADD COLUMN secret TEXT NOT NULL DEFAULT ''",
    4: "ALTER TABLE actions ADD COLUMN http TEXT",
    5: "ALTER TABLE actions ADD COLUMN approval TEXT NOT NULL DEFAULT ''",
    6: "ALTER TABLE resources ADD COLUMN rules TEXT NOT NULL DEFAULT ''",
    7: "ALTER TABLE resources ADD COLUMN staging TEXT NOT NULL DEFAULT ''",
    8: "SELECT 1",  # the pair tables (verdict_memory.py): created by _SCHEMA, which runs first
    9: "ALTER TABLE actions ADD COLUMN plan TEXT",
    10: "ALTER TABLE resources ADD COLUMN sandbox TEXT NOT NULL DEFAULT ''",
    11: "ALTER TABLE resources ADD COLUMN image TEXT NOT NULL DEFAULT ''",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    state TEXT NOT NULL,
    limits TEXT NOT NULL,
    policy_toml TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    closed_at REAL
);
CREATE TABLE IF NOT EXISTS resources (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    uri TEXT NOT NULL,
    strategy TEXT NOT NULL,
    secret TEXT NOT NULL DEFAULT '',
    rules TEXT NOT NULL DEFAULT '',
    staging TEXT NOT NULL DEFAULT '',
    sandbox TEXT NOT NULL DEFAULT '',
    image TEXT NOT NULL DEFAULT '',
    held INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (session_id, name)
);
-- A resource is held by at most one open session: enforced by the database itself.
CREATE UNIQUE INDEX IF NOT EXISTS resources_held ON resources(uri) WHERE held = 1;
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    resource TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    inverse TEXT,
    error TEXT NOT NULL DEFAULT '',
    exec TEXT,
    changes TEXT,
    reversibility TEXT,
    timings TEXT,
    checkpoint TEXT NOT NULL DEFAULT '{}',
    undo_started INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    egress TEXT,
    sql TEXT,
    http TEXT,
    approval TEXT NOT NULL DEFAULT '',
    plan TEXT,
    finished_at REAL,
    resolved_at REAL,
    UNIQUE (session_id, seq)
);
CREATE INDEX IF NOT EXISTS actions_state ON actions(state);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id TEXT NOT NULL REFERENCES actions(id),
    from_state TEXT,
    to_state TEXT NOT NULL,
    at REAL NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS transitions_action ON transitions(action_id);
-- Verdicts and a person's judgements of (action, inverse) pairs (verdict_memory.py), by pair key.
CREATE TABLE IF NOT EXISTS pair_verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair TEXT NOT NULL,
    reversibility_class TEXT NOT NULL,
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL,
    tested_by TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    fingerprint_kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pair_verdicts_pair ON pair_verdicts(pair);
CREATE TABLE IF NOT EXISTS pair_judgements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pair TEXT NOT NULL,
    judgement TEXT NOT NULL,
    who TEXT NOT NULL,
    note TEXT NOT NULL,
    at REAL NOT NULL,
    action_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pair_judgements_pair ON pair_judgements(pair);
"""

_ACTION_COLUMNS = {
    "error",
    "exec",
    "changes",
    "reversibility",
    "timings",
    "checkpoint",
    "undo_started",
    "finished_at",
    "resolved_at",
    "inverse",
    "egress",
    "sql",
    "http",
    "approval",  # one an http write needed only once its pre-image was in (http_calls.py HttpCalls.second_look)
}


# What insert_action() always writes; other columns come as fields.
_INSERTED = (
    "id",
    "session_id",
    "seq",
    "kind",
    "resource",
    "state",
    "spec",
    "inverse",
    "approval",
    "plan",  # a prompt action's exchange with the model (domain/plans.py), with the action itself: one commit
    "created_at",
)

# Columns the daemon itself generates (snapshot ids, times); everything else is redacted on write.
_UNREDACTED = frozenset({"checkpoint", "finished_at", "resolved_at", "undo_started"})


VACUUM_FREE_BYTES = 1024 * 1024  # free pages worth a VACUUM (Journal.vacuum)


class Journal:
    def __init__(self, path: Path, sync: str = "full") -> None:
        self.path = path
        # Replaced by the vault's redactor at start-up: no secret value is ever written here.
        self.redact: Callable[[str], str] = lambda text: text
        # Called when a write finds the disk full (the engine gives up its held-back space: goexd/diskspace.py).
        self.on_full: Callable[[], object] = lambda: None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.RLock()  # re-entered by the writes of a batch()
        self._batching = False
        self.commits = 0  # write transactions committed (each one fsync under sync=full): for tests and benchmarks
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        else:
            self._migrate(int(row["value"]))
        path.chmod(0o600)

    def _migrate(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise InternalError(f"journal {self.path} has schema {version}, newer than this goexd ({SCHEMA_VERSION})")
        while version < SCHEMA_VERSION:
            with self._tx() as db:
                db.execute(_MIGRATIONS[version])
                version += 1
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a full disk, say: the WAL stays, and the next open replays it
                if not is_out_of_space(exc):
                    raise
            self._db.close()

    def file_bytes(self) -> int:
        """The journal's size on disk: the database file, its WAL and shared-memory index."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    def vacuum(self) -> int:
        """Give back the space deleted and trimmed rows left: VACUUM when pages are free, then fold the WAL into
        the file and truncate it. Bytes freed on disk. VACUUM is one transaction (a kill during it leaves the
        journal as before, or as after: tests/faults/test_gc_crash.py); it needs free space about the journal's
        size while it runs (a full disk raises OutOfSpace, and nothing changed)."""
        with self._lock:
            if self._batching:
                raise InternalError("vacuum inside a journal batch")
            before = self.file_bytes()
            free_pages = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
            try:
                if free_pages * page_size >= VACUUM_FREE_BYTES:  # rewriting the whole file for less is not worth it
                    self._db.execute("VACUUM")
                    faults.point("gc-vacuumed", "journal-gc")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                self._abort(exc)
                raise
            return max(0, before - self.file_bytes())

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes inside are one transaction: one commit (one fsync under sync=full), all or none.

        For steps that need not be durable one by one (nothing happens between them that a
        crash could leave half done). Other threads' journal calls wait until it ends, so only
        journal writes and in-memory work belong inside.
        """
        with self._lock:
            if self._batching:
                raise InternalError("journal batches do not nest")
            self._begin()
            self._batching = True
            try:
                yield
            except BaseException as exc:
                self._abort(exc)
                raise
            finally:
                self._batching = False
            self._commit()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._batching:  # inside batch(): its transaction is this one's
                yield self._db
                return
            self._begin()
            try:
                yield self._db
            except BaseException as exc:
                self._abort(exc)
                raise
            self._commit()

    # A write that fails for want of space leaves no transaction open (SQLite may have rolled it back
    # itself, even at COMMIT): the next one starts clean, and the caller gets OutOfSpace, not a raw error.

    def _begin(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._abort(exc)
            raise

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(exc)
            raise
        self.commits += 1

    def _abort(self, exc: BaseException) -> None:
        """End the open transaction, if SQLite has not; raise OutOfSpace (from exc) when it was a full disk."""
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error) and is_out_of_space(exc):
            self.on_full()
            raise out_of_space("writing the journal", [self.path]) from exc

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # For the tables other modules keep here (verdict_memory.py): one statement each.
    read = _query

    def write(self, sql: str, args: Iterable[Any] = ()) -> None:
        with self._tx() as db:
            db.execute(sql, tuple(args))

    # ------------------------------------------------------------ sessions

    def insert_session(self, session: Session, policy_toml: str = "") -> None:
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO sessions (id, label, state, limits, policy_toml, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        session.id,
                        self.redact(session.label),
                        session.state.value,
                        codec.dumps(codec.limits_to_json(session.limits)),
                        self.redact(policy_toml),
                        session.created_at,
                    ),
                )
                for r in session.resources:
                    db.execute(
                        "INSERT INTO resources (session_id, name, kind, uri, strategy, secret, rules, staging, sandbox,"
                        " image) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            session.id,
                            r.name,
                            r.kind.value,
                            r.uri,
                            r.strategy.value,
                            r.secret,
                            r.rules,
                            r.staging,
                            r.sandbox,
                            r.image,
                        ),
                    )
        except sqlite3.IntegrityError as exc:
            holder = self.holder_of([r.uri for r in session.resources])
            raise FailedPrecondition(
                f"resource {holder[1]} is held by open session {holder[0]}"
                if holder
                else f"cannot create session: {exc}"
            ) from None

    def session_policy(self, session_id: str) -> str:
        """The session's own policy TOML, as it was given."""
        rows = self._query("SELECT policy_toml FROM sessions WHERE id = ?", (session_id,))
        return str(rows[0]["policy_toml"]) if rows else ""

    def holder_of(self, uris: list[str]) -> tuple[str, str] | None:
        for uri in uris:
            rows = self._query("SELECT session_id FROM resources WHERE uri = ? AND held = 1", (uri,))
            if rows:
                return rows[0]["session_id"], uri
        return None

    def held_resources(self) -> list[tuple[str, str]]:
        rows = self._query("SELECT session_id, uri FROM resources WHERE held = 1")
        return [(r["session_id"], r["uri"]) for r in rows]

    def discard_session(self, session_id: str) -> None:
        """Remove a session that never opened (no action can refer to it yet): a failed creation leaves no row."""
        with self._tx() as db:
            db.execute("DELETE FROM resources WHERE session_id = ?", (session_id,))
            db.execute(
                "DELETE FROM sessions WHERE id = ? AND NOT EXISTS (SELECT 1 FROM actions WHERE session_id = ?)",
                (session_id, session_id),
            )

    def close_session(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET state = ?, closed_at = ? WHERE id = ?",
                (SessionState.CLOSED.value, time.time(), session_id),
            )
            db.execute("UPDATE resources SET held = 0 WHERE session_id = ?", (session_id,))

    def expire_session(self, session_id: str) -> None:
        """Its idle lease ran out with actions pending (engine/leases.py): it keeps its resources, they stay pending."""
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET state = ? WHERE id = ? AND state = ?",
                (SessionState.EXPIRED.value, session_id, SessionState.OPEN.value),
            )

    def reopen_session(self, session_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET state = ? WHERE id = ? AND state = ?",
                (SessionState.OPEN.value, session_id, SessionState.EXPIRED.value),
            )

    def get_session(self, session_id: str) -> Session | None:
        rows = self._query("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return self._session(rows[0]) if rows else None

    def list_sessions(self, include_closed: bool, after: tuple[float, str], limit: int) -> list[Session]:
        """Sessions after (created_at, id), oldest first."""
        sql = "SELECT * FROM sessions WHERE (created_at, id) > (?, ?)"
        if not include_closed:
            sql += " AND state != 'closed'"  # expired ones too: they still hold their resources
        rows = self._query(sql + " ORDER BY created_at, id LIMIT ?", (*after, limit))
        return [self._session(r) for r in rows]

    def _session(self, row: sqlite3.Row) -> Session:
        resources = tuple(
            Resource(
                r["name"],
                ResourceKind(r["kind"]),
                r["uri"],
                UndoStrategy(r["strategy"]),
                r["secret"],
                r["rules"],
                r["staging"],
                r["sandbox"],
                r["image"],
            )
            for r in self._query("SELECT * FROM resources WHERE session_id = ? ORDER BY rowid", (row["id"],))
        )
        counts = self._query(
            "SELECT count(*) AS total, sum(state = 'executed') AS pending FROM actions WHERE session_id = ?",
            (row["id"],),
        )[0]
        return Session(
            id=row["id"],
            label=row["label"],
            state=SessionState(row["state"]),
            resources=resources,
            limits=codec.limits_from_json(codec.loads(row["limits"])),
            created_at=row["created_at"],
            closed_at=row["closed_at"],
            pending_actions=int(counts["pending"] or 0),
            total_actions=int(counts["total"] or 0),
        )

    # ------------------------------------------------------------ actions

    def insert_action(
        self, action: Action, note: str = "", trail: Sequence[tuple[ActionState, str]] = (), **fields: Any
    ) -> Action:
        """Insert with the next seq of its session; returns the action with its seq (and its last state).

        With `trail` ((state, note) each) and `fields`, the action is inserted as having gone through those
        states with those columns written: what transition() after transition() would leave, in fewer statements.
        """
        bad = set(fields) - _ACTION_COLUMNS
        if bad:
            raise InternalError(f"unknown action columns {sorted(bad)}")
        fields = self._redacted(fields)
        final = trail[-1][0] if trail else action.state
        states = [action.state, *(state for state, _ in trail)]
        with self._tx() as db:
            seq = db.execute(
                "SELECT coalesce(max(seq), 0) + 1 FROM actions WHERE session_id = ?", (action.session_id,)
            ).fetchone()[0]
            values = (
                action.id,
                action.session_id,
                seq,
                action.spec.kind.value,
                action.resource,
                final.value,
                self._redacted({"spec": codec.dumps(codec.spec_to_json(action.spec))})["spec"],
                self._redacted({"inverse": codec.dumps(codec.spec_to_json(action.inverse))})["inverse"]
                if action.inverse
                else None,
                self.redact(action.approval),
                self._text(plans.dumps(action.plan)) if action.plan is not None else None,
                action.created_at,
                *fields.values(),
            )
            columns = ", ".join((*_INSERTED, *fields))  # the field names are checked above
            db.execute(f"INSERT INTO actions ({columns}) VALUES ({', '.join('?' * len(values))})", values)  # noqa: S608
            now = time.time()
            rows: list[tuple[str, str | None, str, float, str]] = [
                (action.id, None, action.state.value, action.created_at, self._text(note))
            ]
            rows += [
                (action.id, before.value, state.value, now, self._text(step_note))
                for before, (state, step_note) in zip(states[:-1], trail, strict=True)
            ]
            db.executemany(
                "INSERT INTO transitions (action_id, from_state, to_state, at, note) VALUES (?, ?, ?, ?, ?)", rows
            )
        # The caller runs what was submitted; only the journal's copy of the spec is redacted.
        return replace(action, seq=seq, state=final)

    def transition(self, action_id: str, old: ActionState, new: ActionState, note: str = "", **fields: Any) -> None:
        """Compare-and-set the state and write `fields`, atomically with the audit row."""
        bad = set(fields) - _ACTION_COLUMNS
        if bad:
            raise InternalError(f"unknown action columns {sorted(bad)}")
        fields, note = self._redacted(fields), self._text(note)
        with self._tx() as db:
            sets = ", ".join(["state = ?"] + [f"{k} = ?" for k in fields])
            cur = db.execute(
                f"UPDATE actions SET {sets} WHERE id = ? AND state = ?",  # noqa: S608 - keys are checked above
                (new.value, *fields.values(), action_id, old.value),
            )
            if cur.rowcount != 1:
                raise FailedPrecondition(f"action {action_id} is no longer {old.value}")
            db.execute(
                "INSERT INTO transitions (action_id, from_state, to_state, at, note) VALUES (?, ?, ?, ?, ?)",
                (action_id, old.value, new.value, time.time(), note),
            )

    def update(self, action_id: str, note: str = "", **fields: Any) -> None:
        """Write fields without a state change (e.g. the checkpoint, or an undo intent)."""
        bad = set(fields) - _ACTION_COLUMNS
        if bad:
            raise InternalError(f"unknown action columns {sorted(bad)}")
        fields, note = self._redacted(fields), self._text(note)
        with self._tx() as db:
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                db.execute(f"UPDATE actions SET {sets} WHERE id = ?", (*fields.values(), action_id))  # noqa: S608
            if note:
                state = db.execute("SELECT state FROM actions WHERE id = ?", (action_id,)).fetchone()[0]
                db.execute(
                    "INSERT INTO transitions (action_id, from_state, to_state, at, note) VALUES (?, ?, ?, ?, ?)",
                    (action_id, state, state, time.time(), note),
                )

    def _redacted(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: self._text(v) if isinstance(v, str) and k not in _UNREDACTED else v for k, v in fields.items()}

    def text(self, text: str) -> str:
        return self._text(text)

    def _text(self, text: str) -> str:
        """Redacted, and storable as SQLite TEXT: an error or note quoting a file name that is not
        UTF-8 (a lone surrogate inside goexd) keeps that byte as \\xHH (goexd/names.py). Paths in
        change sets are JSON with \\uDCxx escapes instead (codec.dumps), which load back exactly."""
        return utf8_text(self.redact(text))

    def get_action(self, action_id: str) -> Action | None:
        rows = self._query("SELECT * FROM actions WHERE id = ?", (action_id,))
        return self._action(rows[0]) if rows else None

    def list_actions(
        self, session_id: str, states: Iterable[ActionState] = (), after_seq: int = 0, limit: int = 1000
    ) -> list[Action]:
        sql = "SELECT * FROM actions WHERE session_id = ? AND seq > ?"
        args: list[Any] = [session_id, after_seq]
        wanted = [s.value for s in states]
        if wanted:
            sql += f" AND state IN ({','.join('?' * len(wanted))})"
            args += wanted
        rows = self._query(sql + " ORDER BY seq LIMIT ?", (*args, limit))
        return [self._action(r) for r in rows]

    def actions_in_states(self, states: Iterable[ActionState]) -> list[Action]:
        wanted = [s.value for s in states]
        rows = self._query(
            f"SELECT * FROM actions WHERE state IN ({','.join('?' * len(wanted))})"  # noqa: S608 - placeholders only
            " ORDER BY session_id, seq DESC",
            wanted,
        )
        return [self._action(r) for r in rows]

    def transitions(self, action_id: str) -> list[tuple[str | None, str, float, str]]:
        rows = self._query(
            "SELECT from_state, to_state, at, note FROM transitions WHERE action_id = ? ORDER BY id",
            (action_id,),
        )
        return [(r["from_state"], r["to_state"], r["at"], r["note"]) for r in rows]

    def counts_by_state(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self._query("SELECT state, count(*) AS n FROM actions GROUP BY state")}

    def open_session_count(self) -> int:
        return int(self._query("SELECT count(*) AS n FROM sessions WHERE state = 'open'")[0]["n"])

    def resolved_before(self, cutoff: float) -> list[Action]:
        rows = self._query(
            "SELECT * FROM actions WHERE resolved_at IS NOT NULL AND resolved_at < ? AND checkpoint != '{}'",
            (cutoff,),
        )
        return [self._action(r) for r in rows]

    def _action(self, row: sqlite3.Row) -> Action:
        def opt(col: str, conv: Any) -> Any:
            return None if row[col] is None else conv(codec.loads(row[col]))

        return Action(
            id=row["id"],
            session_id=row["session_id"],
            seq=row["seq"],
            spec=codec.spec_from_json(codec.loads(row["spec"])),
            state=ActionState(row["state"]),
            resource=row["resource"],
            created_at=row["created_at"],
            inverse=opt("inverse", codec.spec_from_json),
            error=row["error"],
            exec=opt("exec", codec.exec_from_json),
            changes=opt("changes", codec.changes_from_json),
            reversibility=opt("reversibility", codec.reversibility_from_json),
            timings=opt("timings", codec.timings_from_json) or Timings(),
            finished_at=row["finished_at"],
            resolved_at=row["resolved_at"],
            checkpoint=codec.loads(row["checkpoint"]),
            undo_started=bool(row["undo_started"]),
            egress=tuple(codec.egress_from_json(codec.loads(row["egress"]) or [])),
            sql=opt("sql", codec.sql_from_json),
            http=opt("http", codec.http_result_from_json),
            approval=row["approval"],
            plan=plans.loads(row["plan"]) if row["plan"] else None,
        )
