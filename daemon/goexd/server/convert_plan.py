"""Proto <-> domain for the planner: a prompt action's exchange (PromptPlan) and a plan for review."""

from __future__ import annotations

import json

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from goex.v1 import actions_pb2 as apb
from goex.v1 import types_pb2 as pb
from goexd.domain.plans import PlanExchange
from goexd.planner.functions import FunctionSet


def plan_pb(e: PlanExchange) -> pb.PromptPlan:
    started = Timestamp()
    started.FromNanoseconds(int(e.started_at * 1e9))
    msg = pb.PromptPlan(
        prompt=e.prompt,
        mode=e.mode.value,
        endpoint=e.endpoint,
        model=e.model,
        transport=e.transport.value,
        request=e.request,
        request_token_estimate=e.request_tokens,
        plan=e.plan,
        function=e.function,
        error=e.error,
        started_at=started,
    )
    for a in e.attempts:
        latency = Duration()
        latency.FromNanoseconds(int(a.latency_s * 1e9))
        msg.attempts.append(
            pb.PlanAttempt(
                answer=a.answer,
                error=a.error,
                prompt_token_count=a.prompt_tokens,
                completion_token_count=a.completion_tokens,
                latency=latency,
            )
        )
    return msg


def function_set_pb(s: FunctionSet) -> apb.FunctionSet:
    return apb.FunctionSet(
        name=s.name,
        description=s.description,
        rules=s.rules,
        source=s.source,
        functions=[
            apb.FunctionInfo(
                name=f.name,
                description=f.description,
                parameters_schema=json.dumps(f.parameters, sort_keys=True),
                method=f.method,
                path=f.path,
                inverse=f.inverse,
                kind=f.kind,
            )
            for f in s.functions.values()
        ],
    )
