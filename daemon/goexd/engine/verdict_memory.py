"""Verdicts remembered per (forward action, inverse) pair, and a person's judgements of them.

A pair is keyed by its resource (kind and canonical URI) and both specs normalised (pair_key):
SQL by its tokens (keywords in one case, comments and layout dropped; strings, identifiers and
parameters exact), shell by its argv, python by its code (both with env and stdin), HTTP by
method, path, query, the headers' names and values as sent (a JSON body's implied Content-Type
included, so a client inverse keys alike as submitted and as the action records it) and the body
(JSON re-serialised with sorted keys). The resource is part of the key: the same specs on another
workspace path, database or base URL are another pair. Normalising only ever merges texts that run
alike: when in doubt, two pairs stay apart and the second is simply tested.

A tested verdict (passed or failed; never unknown, which is retried) is kept with the
fingerprint of what the pair touches, taken just before the test and unchanged just after it;
the same pair on a resource with the same fingerprint reuses it and says so: "reused: ...
tested at <when> ...; not tried again". What each strategy's fingerprint is (fingerprint_of) is said with it:

- a workspace (any fs strategy): its snapshot id, which files are hard links of each other, and a
  digest of the extended attributes (POSIX ACLs included) of its files (fs_xattrs.py: snapshots do
  not hold them, so a verdict from a state without an ACL is not reused on one with it). Exact, and
  it changes with any edit anywhere in the workspace, so a reuse needs the whole tree unchanged;
  costs one incremental capture (cheap with inotify, a stat walk without); the extended attributes
  are taken only where a verdict is kept or a kept one's snapshot id matches, from what the resource
  follows through the captures' dirty sets (a listxattr walk of the workspace only after a capture
  it cannot follow: a full scan).
- SQLite (inverse strategy): the whole database's fingerprint, as the resource tracks it (schema
  and every table's content; updated from what goexd's own statements change, re-read whole only
  after another connection wrote). Exact, a superset of the tables the pair touches: a write to
  any table forces a new test.
- PostgreSQL and HTTP: none. PostgreSQL's exact fingerprint reads every table (~175 ms at 1M
  rows), more than the test it would save (the action, the inverse and ~10 ms); a staging
  service cannot be fingerprinted at all. They are tested every time; their verdicts are still
  kept, as history.

A person's judgement (right or wrong, who, a note, when) is kept with the pair whatever the
fingerprint. A pair marked wrong is failed next time even when its test passes (the engine then
refuses it, or flags it where the policy allows a failed inverse); one marked right is still
tested: a person's "right" never skips the test, it is only shown beside it.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlglot import TokenType
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError

from goexd.domain import codec
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import (
    ActionKind,
    ActionSpec,
    Resource,
    ResourceKind,
    Reversibility,
    ReversibilityClass,
    Verdict,
)
from goexd.domain.resource import FingerprintsForVerdicts
from goexd.engine.journal import Journal

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 2000
MAX_WHO_CHARS = 200
_REMEMBERED = frozenset({Verdict.PASSED, Verdict.FAILED})
_QUOTED = frozenset({TokenType.STRING, TokenType.IDENTIFIER, TokenType.VAR, TokenType.NUMBER})


class Judgement(enum.StrEnum):
    RIGHT = "right"
    WRONG = "wrong"


@dataclass(frozen=True)
class PairVerdict:
    """A tested verdict of a pair, on a resource whose fingerprint was `fingerprint`."""

    reversibility_class: ReversibilityClass
    verdict: Verdict
    detail: str
    tested_at: float
    tested_by: str  # which test: "TestReversibility" or "before action <id>"
    fingerprint: str
    fingerprint_kind: str


@dataclass(frozen=True)
class PairJudgement:
    judgement: Judgement
    who: str
    note: str
    at: float
    action_id: str  # the action it was given on


@dataclass(frozen=True)
class PairHistory:
    key: str
    verdicts: tuple[PairVerdict, ...]  # oldest first
    judgements: tuple[PairJudgement, ...]  # oldest first

    @property
    def judgement(self) -> PairJudgement | None:
        """The latest: a later judgement replaces an earlier one."""
        return self.judgements[-1] if self.judgements else None


@dataclass(frozen=True)
class Fingerprint:
    value: str
    kind: str  # what it is, in words


REFINED = "+"  # a refined fingerprint is the cheap one, this, and more (FingerprintsForVerdicts)


def _sql_tokens(sql: str, dialect: str) -> list[str] | None:
    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except (TokenError, ValueError):
        return None
    return [
        f"{t.token_type.name}:{t.text if t.token_type in _QUOTED else t.text.upper()}"
        for t in tokens
        if t.token_type is not TokenType.SEMICOLON
    ]


def _spec_doc(spec: ActionSpec, resource: Resource) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": spec.kind.value}
    if spec.kind is ActionKind.SQL:
        dialect = "sqlite" if resource.kind is ResourceKind.SQLITE else "postgres"
        tokens = _sql_tokens(spec.sql, dialect)
        doc.update(sql=tokens if tokens is not None else spec.sql, params=list(spec.params))
    elif spec.kind is ActionKind.HTTP and spec.http is not None:
        r = spec.http
        body: Any = codec.spec_to_json(spec)["http"]["body"]
        if r.json:
            with contextlib.suppress(ValueError):
                body = json.loads(r.body)
        headers = [(k.lower(), v) for k, v in r.headers]
        if r.json and not any(k == "content-type" for k, _ in headers):  # as sent (call_of), and as goexd records it
            headers.append(("content-type", "application/json"))
        headers.sort()
        doc.update(method=r.method.upper(), path=r.path, query=[list(q) for q in r.query], headers=headers, body=body)
    else:
        doc.update(
            argv=list(spec.argv), code=spec.code, env=sorted(spec.env.items()), stdin=codec.spec_to_json(spec)["stdin"]
        )
        if spec.cwd:  # the same command in another directory is another pair (unset: the key it always had)
            doc["cwd"] = spec.cwd
    return doc


def pair_key(resource: Resource, spec: ActionSpec, inverse: ActionSpec) -> str:
    """The pair's key: a digest of its resource and both specs, normalised (see the module doc)."""
    doc = {
        "resource": [resource.kind.value, resource.uri],
        "forward": _spec_doc(spec, resource),
        "inverse": _spec_doc(inverse, resource),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint_of(manager: object) -> Fingerprint | None:
    """The fingerprint of what a pair on this resource touches, or None where none is cheap and exact."""
    if isinstance(manager, FingerprintsForVerdicts):
        return Fingerprint(*manager.verdict_fingerprint())
    return None


def _may_match(kept: str, cheap: Fingerprint) -> bool:
    """Whether a kept fingerprint may be of this state: equal, or equal but for what _refined adds."""
    return kept == cheap.value or kept.startswith(cheap.value + REFINED)


def _refined(manager: object, cheap: Fingerprint) -> Fingerprint | None:
    """The fingerprint with what costs a walk of the workspace: its extended attributes (ACLs included), which
    its snapshot id does not cover. Taken only when a verdict is kept, or a kept one may be reused."""
    if not isinstance(manager, FingerprintsForVerdicts):
        return cheap
    try:
        return Fingerprint(manager.refined_verdict_fingerprint(cheap.value), cheap.kind)
    except OSError as exc:
        log.warning("no refined fingerprint of %s to recall a verdict by: %s", cheap.kind, exc)
        return None


def _fingerprint(resource: Resource, manager: object) -> Fingerprint | None:
    try:
        return fingerprint_of(manager)
    except Exception as exc:  # the test itself says what is wrong, if anything is
        log.warning("no fingerprint of %s to recall a verdict by: %s", resource.name, exc)
        return None


def _ago(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


class VerdictMemory:
    """The pairs' verdicts and judgements, kept in the journal (tables pair_verdicts, pair_judgements)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def history(self, key: str) -> PairHistory:
        verdicts = tuple(
            PairVerdict(
                ReversibilityClass(r["reversibility_class"]),
                Verdict(r["verdict"]),
                r["detail"],
                r["at"],
                r["tested_by"],
                r["fingerprint"],
                r["fingerprint_kind"],
            )
            for r in self.journal.read("SELECT * FROM pair_verdicts WHERE pair = ? ORDER BY id", (key,))
        )
        judgements = tuple(
            PairJudgement(Judgement(r["judgement"]), r["who"], r["note"], r["at"], r["action_id"])
            for r in self.journal.read("SELECT * FROM pair_judgements WHERE pair = ? ORDER BY id", (key,))
        )
        return PairHistory(key, verdicts, judgements)

    def remember(self, key: str, tested: Reversibility, fingerprint: Fingerprint | None, tested_by: str) -> None:
        if tested.verdict not in _REMEMBERED:
            return
        self.journal.write(
            "INSERT INTO pair_verdicts (pair, reversibility_class, verdict, detail, at, tested_by, fingerprint,"
            " fingerprint_kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                tested.reversibility_class.value,
                tested.verdict.value,
                self.journal.text(tested.detail),
                tested.tested_at or time.time(),
                tested_by,
                fingerprint.value if fingerprint else "",
                fingerprint.kind if fingerprint else "",
            ),
        )

    def judge(self, key: str, judgement: Judgement, who: str, note: str, action_id: str) -> PairJudgement:
        if len(who) > MAX_WHO_CHARS:
            raise InvalidArgument("who", f"at most {MAX_WHO_CHARS} characters")
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidArgument("note", f"at most {MAX_NOTE_CHARS} characters")
        text = self.journal.text
        found = PairJudgement(judgement, text(who.strip()), text(note.strip()), time.time(), action_id)
        self.journal.write(
            "INSERT INTO pair_judgements (pair, judgement, who, note, at, action_id) VALUES (?, ?, ?, ?, ?, ?)",
            (key, found.judgement.value, found.who, found.note, found.at, action_id),
        )
        return found


def reused(found: PairVerdict) -> Reversibility:
    """A remembered verdict, saying it was reused and from when: never presented as freshly tested."""
    detail = (
        f"reused: {found.verdict.value} when {found.tested_by} tried this pair at {_ago(found.tested_at)} "
        f"on the same state ({found.fingerprint_kind} {found.fingerprint[:12]}); not tried again: {found.detail}"
    )
    return Reversibility(found.reversibility_class, found.verdict, detail, found.tested_at)


def remembered(
    memory: VerdictMemory,
    resource: Resource,
    manager: object,
    spec: ActionSpec,
    inverse: ActionSpec | None,
    tested_by: str,
    test: Callable[[], Reversibility | None],
) -> Reversibility | None:
    """`test()`'s verdict of the pair, or the one remembered for it on the same state, with a person's
    judgement of the pair applied (judged); a new passed or failed verdict is remembered."""
    if inverse is None:
        return test()
    key = pair_key(resource, spec, inverse)
    history = memory.history(key)
    fingerprint = _fingerprint(resource, manager)
    candidates = [
        v for v in reversed(history.verdicts) if fingerprint is not None and _may_match(v.fingerprint, fingerprint)
    ]
    whole = _refined(manager, fingerprint) if candidates and fingerprint is not None else None
    found = next((v for v in candidates if whole is not None and v.fingerprint == whole.value), None)
    if found is not None:
        tested: Reversibility | None = reused(found)
    else:
        tested = test()
        # Kept by its fingerprint only if the state did not change while it was tested (another writer, a
        # person's edit): else it is kept as history, never to be reused.
        if fingerprint is not None and _fingerprint(resource, manager) != fingerprint:
            fingerprint = None
        if fingerprint is not None and tested is not None:
            fingerprint = _refined(manager, fingerprint)
        if tested is not None:
            memory.remember(key, replace(tested, tested_at=tested.tested_at or time.time()), fingerprint, tested_by)
    if tested is None and history.judgement is not None and history.judgement.judgement is Judgement.WRONG:
        tested = Reversibility(ReversibilityClass.REVERSIBLE, Verdict.UNTESTED, "this strategy does not test pairs")
    return judged(tested, history.judgement) if tested is not None else None


def judged(tested: Reversibility, judgement: PairJudgement | None) -> Reversibility:
    """The verdict with a person's judgement of the pair: wrong fails it whatever the test said; right is shown."""
    if judgement is None:
        return tested
    by = f"{judgement.who or 'someone'} at {_ago(judgement.at)}" + (f": {judgement.note}" if judgement.note else "")
    if judgement.judgement is Judgement.WRONG:
        return replace(
            tested,
            verdict=Verdict.FAILED,
            detail=f"a person marked this pair wrong ({by}); untold, it is {tested.verdict.value}: {tested.detail}",
        )
    return replace(
        tested,
        detail=f"{tested.detail}; a person marked this pair right ({by}), which never skips its test",
    )
