"""engine/sql_policy.py: a client SQL inverse is held to the same policy rules as its action (trial 15b,
finding 1): its statements are in the facts with the field they came in, and an undo checks the inverse it
is about to run (the checkpoint's) again, with the action's approval, before anything runs."""

from __future__ import annotations

import pytest

from goexd.domain.errors import InvalidArgument, PermissionDenied
from goexd.domain.models import Action, ActionKind, ActionSpec, ActionState, Resource, ResourceKind, UndoStrategy
from goexd.engine.sql_policy import check_undo, refuse_test, sql_facts
from goexd.policy.check import SessionPolicy
from goexd.policy.model import DecisionKind
from goexd.policy.parse import build_session, load, parse
from goexd.resources.postgres.run import check_script


def _db(kind: ResourceKind, strategy: UndoStrategy = UndoStrategy.INVERSE) -> Resource:
    return Resource("db", kind, "/var/tmp/x.db" if kind is ResourceKind.SQLITE else "postgresql://app@h/db", strategy)


def _sql(text: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=text)


def _action(inverse: str, approval: str = "", checkpoint: dict[str, str] | None = None) -> Action:
    return Action(
        id="act_1",
        session_id="ses_1",
        seq=1,
        spec=_sql("UPDATE t SET a = 1"),
        state=ActionState.EXECUTED,
        resource="db",
        created_at=0.0,
        inverse=_sql(inverse),
        checkpoint={"inverse_sql": inverse} if checkpoint is None else checkpoint,
        approval=approval,
    )


def test_the_inverse_statements_are_facts_with_their_field() -> None:
    facts = sql_facts(_db(ResourceKind.SQLITE), _sql("UPDATE t SET a = 1"), _sql("UPDATE t SET a = 0; VACUUM"))
    assert [(s.cls, s.n, s.sql_field) for s in facts.statements] == [
        ("write", 1, "spec.sql.sql"),
        ("write", 1, "inverse.sql.sql"),
        ("other", 2, "inverse.sql.sql"),
    ]
    decision = SessionPolicy(load("")).check(
        sql_facts(_db(ResourceKind.SQLITE), _sql("UPDATE t SET a = 1"), _sql("ATTACH 'x.db' AS x")), count=False
    )
    assert decision.rule == "sql.privileged"
    assert decision.reason.startswith("statement 1 of the inverse (inverse.sql.sql) is privileged (ATTACH")


@pytest.mark.parametrize("kind", [ResourceKind.SQLITE, ResourceKind.POSTGRES])
def test_a_syntax_error_in_the_inverse_names_the_inverse(kind: ResourceKind) -> None:
    with pytest.raises(InvalidArgument) as info:
        sql_facts(_db(kind), _sql("UPDATE t SET a = 1"), _sql("DELETE FROM WHERE"))
    assert info.value.field == "inverse.sql.sql"


def test_a_test_runs_nothing_the_policy_refuses_or_holds() -> None:
    policy = SessionPolicy(load(""), build_session(parse('[sql]\nddl = "approval"\n')))
    facts = sql_facts(_db(ResourceKind.POSTGRES), _sql("UPDATE t SET a = 1"), _sql("CREATE EXTENSION citext"))
    with pytest.raises(PermissionDenied, match=r"sql.privileged.*nothing was run"):
        refuse_test(policy.check(facts, count=False))
    facts = sql_facts(_db(ResourceKind.POSTGRES), _sql("UPDATE t SET a = 1"), _sql("CREATE TABLE u (a int)"))
    with pytest.raises(PermissionDenied, match=r"sql.ddl.*holds for an approval: nothing was run"):
        refuse_test(policy.check(facts, count=False))
    refuse_test(policy.check(sql_facts(_db(ResourceKind.POSTGRES), _sql("UPDATE t SET a = 1"), None), count=False))


def test_an_undo_checks_the_recorded_inverse_against_the_policy_now() -> None:
    denying = SessionPolicy(load(""))
    with pytest.raises(PermissionDenied, match=r"cannot undo action act_1: .*inverse.sql.sql.*not run"):
        check_undo(denying, _action("UPDATE t SET a = 0; ATTACH 'x.db' AS x"), ResourceKind.SQLITE)
    # What runs is the checkpoint's text: an action whose record says otherwise is held to what would run.
    recorded = {"inverse_sql": "VACUUM INTO '/tmp/leak.db'"}
    with pytest.raises(PermissionDenied, match="VACUUM INTO"):
        check_undo(denying, _action("UPDATE t SET a = 0", checkpoint=recorded), ResourceKind.SQLITE)
    check_undo(denying, _action("UPDATE t SET a = 0"), ResourceKind.SQLITE)  # lawful: no refusal
    # An approval the action carried covers its inverse too, as it did at submit.
    holding = SessionPolicy(load('[sql]\nddl = "approval"\n'))
    with pytest.raises(PermissionDenied, match=r"sql\.ddl"):
        check_undo(holding, _action("DROP TABLE u"), ResourceKind.POSTGRES)
    check_undo(holding, _action("DROP TABLE u", approval="ann: cleanup"), ResourceKind.POSTGRES)
    # Not a SQL inverse on a database (a workspace's shell inverse): not this check's.
    check_undo(denying, _action("ATTACH 'x.db' AS x"), ResourceKind.FS)


NOTIFY = "UPDATE t SET a = 1; NOTIFY ch, 'x'"


@pytest.mark.parametrize("strategy", [UndoStrategy.INVERSE, UndoStrategy.CLONE])
def test_a_notification_needs_an_approval_where_the_action_commits_at_once(strategy: UndoStrategy) -> None:
    """Trial 15b, finding 7: NOTIFY is delivered when the action commits; no undo takes it back."""
    policy = SessionPolicy(load(""))
    facts = sql_facts(_db(ResourceKind.POSTGRES, strategy), _sql(NOTIFY), _sql("UPDATE t SET a = 0"))
    decision = policy.check(facts)
    assert decision.kind is DecisionKind.NEEDS_APPROVAL and decision.rule == "sql.irreversible"
    assert decision.reason.startswith("statement 2 is not reversible: NOTIFY ch sends a notification")
    assert policy.check(facts, "ann: the listeners expect it").allowed
    assert not SessionPolicy(load(""), build_session(parse('[sql]\nirreversible = "deny"\n'))).check(facts, "a").allowed
    assert SessionPolicy(load('[sql]\nirreversible = "allow"\n')).check(facts).allowed


def test_a_notification_is_no_concern_where_nothing_commits() -> None:
    """Under the transaction strategy it is sent at the session's commit, if ever; a test never commits; an
    inverse's is its undo's own effect."""
    policy = SessionPolicy(load(""))
    tx = sql_facts(_db(ResourceKind.POSTGRES, UndoStrategy.TRANSACTION), _sql(NOTIFY), None, in_connection=True)
    trial = sql_facts(_db(ResourceKind.POSTGRES), _sql(NOTIFY), _sql("UPDATE t SET a = 0"), trial=True)
    inverse = sql_facts(_db(ResourceKind.POSTGRES), _sql("UPDATE t SET a = 1"), _sql(NOTIFY))
    assert policy.check(tx).allowed and policy.check(trial, count=False).allowed and policy.check(inverse).allowed


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("COPY t TO PROGRAM 'touch /tmp/x'", "COPY TO a program on the database server is never run by goexd"),
        ("COPY t FROM PROGRAM 'cat /etc/passwd'", "COPY FROM a program on the database server is never run"),
        ("COPY t TO '/tmp/rows.csv'", "COPY TO a file on the database server is never run by goexd"),
        ("COPY t FROM '/etc/hostname'", "COPY FROM a file on the database server is never run by goexd"),
        ("COPY t TO STDOUT", "COPY TO STDOUT needs a data stream"),
    ],
)
def test_no_copy_runs_even_where_the_policy_allows_privileged_sql(sql: str, says: str) -> None:
    """Behind the policy (which refuses the file and PROGRAM forms as privileged), the resource refuses every COPY,
    saying which form it is, for an action and for an inverse alike."""
    assert (
        SessionPolicy(load('[sql]\nprivileged = "allow"\n'))
        .check(sql_facts(_db(ResourceKind.POSTGRES), _sql("UPDATE t SET a = 1"), _sql(sql)))
        .allowed
    )
    for spec, fld in ((_sql(sql), "spec"), (_sql(f"UPDATE t SET a = 0; {sql}"), "inverse")):
        with pytest.raises(InvalidArgument) as info:
            check_script(spec, fld, runs_in="its own transaction")
        assert info.value.field == f"{fld}.sql.sql" and says in info.value.problem, info.value
