"""A pair's remembered verdicts and judgements (engine/verdict_memory.py) to and from the contract."""

from __future__ import annotations

from goex.v1 import actions_pb2 as apb
from goexd.domain.errors import InvalidArgument
from goexd.domain.models import Reversibility
from goexd.engine.verdict_memory import Judgement, PairHistory
from goexd.server.convert import reversibility_pb, ts

_JUDGEMENT_FROM_PB: dict[apb.Judgement, Judgement] = {
    apb.JUDGEMENT_RIGHT: Judgement.RIGHT,
    apb.JUDGEMENT_WRONG: Judgement.WRONG,
}
_JUDGEMENT_TO_PB = {v: k for k, v in _JUDGEMENT_FROM_PB.items()}


def judgement(value: apb.Judgement, fld: str) -> Judgement:
    found = _JUDGEMENT_FROM_PB.get(value)
    if found is None:
        raise InvalidArgument(fld, "must be JUDGEMENT_RIGHT or JUDGEMENT_WRONG")
    return found


def pair_history_pb(history: PairHistory) -> apb.PairHistory:
    return apb.PairHistory(
        verdicts=[
            apb.PairVerdict(
                reversibility=reversibility_pb(Reversibility(v.reversibility_class, v.verdict, v.detail, v.tested_at)),
                tested_by=v.tested_by,
                fingerprint=v.fingerprint,
                fingerprint_kind=v.fingerprint_kind,
            )
            for v in history.verdicts
        ],
        judgements=[
            apb.PairJudgement(
                judgement=_JUDGEMENT_TO_PB[j.judgement], who=j.who, note=j.note, at=ts(j.at), action_id=j.action_id
            )
            for j in history.judgements
        ],
    )
