"""`[fs] failed_inverse`: whether a workspace action whose inverse failed its test may run flagged."""

from __future__ import annotations

import pytest

from goexd.policy.check import SessionPolicy
from goexd.policy.model import DecisionKind
from goexd.policy.parse import PolicyError, build, build_session, parse


def _policy(daemon: str, session: str | None = None) -> SessionPolicy:
    return SessionPolicy(build([parse(daemon)]), build_session(parse(session)) if session is not None else None)


def test_refused_by_default_even_with_an_approval() -> None:
    decision = _policy("").failed_inverse("ann: fine")
    assert decision.kind is DecisionKind.DENY and decision.rule == "fs.failed_inverse"


def test_approval_runs_it_only_with_an_approval_and_allow_always() -> None:
    policy = _policy('[fs]\nfailed_inverse = "approval"\n')
    assert policy.failed_inverse("").kind is DecisionKind.NEEDS_APPROVAL
    allowed = policy.failed_inverse("ann: fine")
    assert allowed.allowed and allowed.approval == "ann: fine"
    assert _policy('[fs]\nfailed_inverse = "allow"\n').failed_inverse("").allowed


def test_a_session_policy_can_narrow_but_not_loosen() -> None:
    assert _policy("", '[fs]\nfailed_inverse = "allow"\n').failed_inverse("x").kind is DecisionKind.DENY
    narrowed = _policy('[fs]\nfailed_inverse = "allow"\n', '[fs]\nfailed_inverse = "approval"\n')
    assert narrowed.failed_inverse("").kind is DecisionKind.NEEDS_APPROVAL
    assert _policy('[fs]\nfailed_inverse = "allow"\n', "").failed_inverse("").allowed  # the session says nothing


def test_a_bad_value_or_key_names_it_and_its_line() -> None:
    with pytest.raises(PolicyError) as info:
        parse('[fs]\nfailed_inverse = "maybe"\n')
    assert info.value.line == 2 and "fs.failed_inverse" in info.value.message
    with pytest.raises(PolicyError) as info:
        parse("[fs]\nfailed = 1\n")
    assert "fs.failed" in info.value.message
