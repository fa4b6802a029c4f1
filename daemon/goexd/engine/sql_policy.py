"""The policy's facts about SQL goexd will run on a database: the action's statements and its client inverse's.

A client inverse is SQL goexd runs too: in the reversibility test before the action (on a clone or in a
rolled-back transaction, where a statement such as SQLite's ATTACH or VACUUM INTO still writes files), and
for real at undo. So every statement of it is classified and held to the same rules as the action's, with
the field it came in (`inverse.sql.sql`) named in a refusal: at submit, in TestReversibility, and again at
undo (the daemon's policy may have changed since the action ran).
"""

from __future__ import annotations

from dataclasses import replace

from goexd.domain.errors import PermissionDenied
from goexd.domain.models import Action, ActionKind, ActionSpec, Resource, ResourceKind
from goexd.policy.check import SessionPolicy
from goexd.policy.model import ActionFacts, Decision, DecisionKind, SqlStatementFacts
from goexd.sql.classify import classify_script
from goexd.sql.model import Dialect

DB_KINDS = frozenset({ResourceKind.SQLITE, ResourceKind.POSTGRES})


def dialect_of(kind: ResourceKind) -> Dialect:
    return "sqlite" if kind is ResourceKind.SQLITE else "postgres"


def statement_facts(
    spec: ActionSpec, dialect: Dialect, fld: str, commits: bool = False
) -> tuple[SqlStatementFacts, ...]:
    """Each statement of `spec`'s script, classified; a syntax error names `fld`.sql.sql. `commits`: the
    statements commit for good when they run (what escapes the database then is a fact: [sql] irreversible)."""
    sql_field = f"{fld}.sql.sql"
    return tuple(
        SqlStatementFacts(st.cls.value, st.reason, i + 1, sql_field, st.escapes if commits else "")
        for i, st in enumerate(classify_script(spec.sql, dialect, sql_field))
    )


def sql_facts(
    resource: Resource, spec: ActionSpec, inverse: ActionSpec | None, trial: bool = False, in_connection: bool = False
) -> ActionFacts:
    """The action's statements, then its client inverse's (when it is SQL: another kind is refused later).

    The action's effects outside the database (a notification) count where its strategy commits each action at
    once: not where its work stays in goexd's open connection until the session commits (`in_connection`, the
    transaction strategy's StrategyTraits), nor in a trial (TestReversibility), which never commits."""
    dialect = dialect_of(resource.kind)
    commits = not trial and not in_connection
    statements = statement_facts(spec, dialect, "spec", commits)
    if inverse is not None and inverse.kind is ActionKind.SQL:
        statements += statement_facts(inverse, dialect, "inverse")
    return ActionFacts("sql", resource.name, statements=statements)


def refuse_test(decision: Decision) -> None:
    """A reversibility test runs nothing the policy would not run without an approval (it has none to give)."""
    if decision.allowed:
        return
    why = f"{decision.reason} [policy rule {decision.rule}]; a reversibility test runs nothing the policy "
    if decision.kind is DecisionKind.NEEDS_APPROVAL:
        why += (
            "holds for an approval: nothing was run; submit the action with an explicit approval "
            '(goex: --approve "who: why") and its test runs before it'
        )
    else:
        why += "refuses: nothing was run"
    raise PermissionDenied(why)


def check_undo(policy: SessionPolicy, action: Action, kind: ResourceKind) -> None:
    """Before an undo runs an action's client SQL inverse: the policy on it, with the action's approval.

    The inverse run is the checkpoint's (what checkpoint() recorded from the action's inverse)."""
    inverse = action.inverse
    if inverse is None or inverse.kind is not ActionKind.SQL or kind not in DB_KINDS:
        return
    recorded = replace(inverse, sql=action.checkpoint.get("inverse_sql", inverse.sql))
    facts = ActionFacts("sql", action.resource, statements=statement_facts(recorded, dialect_of(kind), "inverse"))
    decision = policy.check(facts, action.approval, count=False)
    if not decision.allowed:
        raise PermissionDenied(
            f"cannot undo action {action.id}: {decision.reason} [policy rule {decision.rule}]; its inverse was "
            "not run and the action stays pending"
        )
