"""What `Client.judge_pair` and `Client.pair_history` return, and their requests.

goexd keeps, per (action, inverse) pair (its resource and both specs, normalised), every passed
or failed test of it with the fingerprint of what it touched, and a person's judgements. The
same pair on the same state reuses its verdict (saying so); a pair marked wrong is failed even
when its test passes; one marked right is still tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from goex._models import Reversibility, _Model
from goex._protoutil import timestamp
from goex.v1 import actions_pb2

__all__ = ["JUDGEMENTS", "PairHistory", "PairJudgement", "PairVerdict", "history_request", "judge_request"]

JUDGEMENTS = ("right", "wrong")
_TO_PB = {"right": actions_pb2.JUDGEMENT_RIGHT, "wrong": actions_pb2.JUDGEMENT_WRONG}
_FROM_PB = {v: k for k, v in _TO_PB.items()}


@dataclass(frozen=True)
class PairVerdict(_Model[actions_pb2.PairVerdict]):
    """One passed or failed test of the pair."""

    reversibility: Reversibility
    tested_by: str  # "TestReversibility", "the test before action act_..."
    fingerprint: str  # of what the pair touched, just before the test; "" where none is kept
    fingerprint_kind: str  # what that fingerprint is

    @classmethod
    def from_proto(cls, msg: actions_pb2.PairVerdict) -> PairVerdict:
        return cls(
            reversibility=Reversibility.from_proto(msg.reversibility),
            tested_by=msg.tested_by,
            fingerprint=msg.fingerprint,
            fingerprint_kind=msg.fingerprint_kind,
            proto=msg,
        )


@dataclass(frozen=True)
class PairJudgement(_Model[actions_pb2.PairJudgement]):
    judgement: str  # "right" | "wrong" ("unspecified" from a newer goexd's unknown value)
    who: str
    note: str
    at: datetime | None
    action_id: str  # the action it was given on

    @classmethod
    def from_proto(cls, msg: actions_pb2.PairJudgement) -> PairJudgement:
        return cls(
            judgement=_FROM_PB.get(msg.judgement, "unspecified"),
            who=msg.who,
            note=msg.note,
            at=timestamp(msg, "at"),
            action_id=msg.action_id,
            proto=msg,
        )


@dataclass(frozen=True)
class PairHistory(_Model[actions_pb2.PairHistory]):
    verdicts: tuple[PairVerdict, ...]  # oldest first
    judgements: tuple[PairJudgement, ...]  # oldest first; the last is in force

    @property
    def judgement(self) -> PairJudgement | None:
        return self.judgements[-1] if self.judgements else None

    @classmethod
    def from_proto(cls, msg: actions_pb2.PairHistory) -> PairHistory:
        return cls(
            verdicts=tuple(PairVerdict.from_proto(v) for v in msg.verdicts),
            judgements=tuple(PairJudgement.from_proto(j) for j in msg.judgements),
            proto=msg,
        )


def judge_request(action_id: str, judgement: str, who: str, note: str) -> actions_pb2.JudgePairRequest:
    if judgement not in _TO_PB:
        raise ValueError(f"judgement must be one of {', '.join(JUDGEMENTS)}, not {judgement!r}")
    return actions_pb2.JudgePairRequest(action_id=action_id, judgement=_TO_PB[judgement], who=who, note=note)


def history_request(action_id: str) -> actions_pb2.GetPairHistoryRequest:
    return actions_pb2.GetPairHistoryRequest(action_id=action_id)
