"""What the planner did with a prompt: its exchange with the model (`Action.plan`) and a plan for review."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from goex._models import Reversibility, _Model
from goex._protoutil import seconds, timestamp
from goex._specs import ActionSpec
from goex.v1 import actions_pb2, types_pb2

__all__ = ["FunctionInfo", "FunctionSetInfo", "PlanAttempt", "PlanReview", "PromptPlan"]


@dataclass(frozen=True)
class PlanAttempt(_Model[types_pb2.PlanAttempt]):
    answer: str  # as the model gave it (its tool calls as JSON); redacted, capped
    error: str  # why goexd refused it and asked again; "" for the answer it took
    prompt_tokens: int
    completion_tokens: int
    latency: float | None  # seconds

    @classmethod
    def from_proto(cls, msg: types_pb2.PlanAttempt) -> PlanAttempt:
        return cls(
            answer=msg.answer,
            error=msg.error,
            prompt_tokens=msg.prompt_token_count,
            completion_tokens=msg.completion_token_count,
            latency=seconds(msg, "latency"),
            proto=msg,
        )


@dataclass(frozen=True)
class PromptPlan(_Model[types_pb2.PromptPlan]):
    prompt: str
    mode: str  # "chat" or "functions"
    endpoint: str  # base URL, or "embedded: <model file>"
    model: str
    transport: str  # "json_schema", "tools" or "json"
    request: str  # the messages sent first (redacted)
    request_tokens: int  # goexd's estimate
    attempts: tuple[PlanAttempt, ...]
    plan: str  # the plan taken, as JSON ("" when none was)
    function: str  # functions mode: "<set>.<function>"
    error: str  # why no plan was made
    started_at: datetime | None

    @property
    def plan_json(self) -> dict[str, Any] | None:
        return json.loads(self.plan) if self.plan else None

    @property
    def latency(self) -> float:
        """Seconds the model took over all attempts."""
        return sum(a.latency or 0.0 for a in self.attempts)

    @classmethod
    def from_proto(cls, msg: types_pb2.PromptPlan) -> PromptPlan:
        return cls(
            prompt=msg.prompt,
            mode=msg.mode,
            endpoint=msg.endpoint,
            model=msg.model,
            transport=msg.transport,
            request=msg.request,
            request_tokens=msg.request_token_estimate,
            attempts=tuple(PlanAttempt.from_proto(a) for a in msg.attempts),
            plan=msg.plan,
            function=msg.function,
            error=msg.error,
            started_at=timestamp(msg, "started_at"),
            proto=msg,
        )


@dataclass(frozen=True)
class PlanReview(_Model[actions_pb2.PlanActionResponse]):
    """A prompt's plan for review (nothing ran): the action, its inverse, the policy's answer and the pair's test."""

    action: ActionSpec | None
    inverse: ActionSpec | None  # None where the strategy undoes by itself or the http rule set derives it
    plan: PromptPlan
    policy_decision: str  # "allow", "deny" or "needs_approval"
    policy_rule: str
    policy_reason: str
    reversibility: Reversibility | None

    @classmethod
    def from_proto(cls, msg: actions_pb2.PlanActionResponse) -> PlanReview:
        return cls(
            action=ActionSpec.from_proto(msg.action) if msg.HasField("action") else None,
            inverse=ActionSpec.from_proto(msg.inverse) if msg.HasField("inverse") else None,
            plan=PromptPlan.from_proto(msg.plan),
            policy_decision=msg.policy_decision,
            policy_rule=msg.policy_rule,
            policy_reason=msg.policy_reason,
            reversibility=Reversibility.from_proto(msg.reversibility) if msg.HasField("reversibility") else None,
            proto=msg,
        )


@dataclass(frozen=True)
class FunctionInfo(_Model[actions_pb2.FunctionInfo]):
    name: str
    description: str
    parameters: dict[str, Any]  # the JSON Schema of its arguments
    method: str
    path: str
    inverse: str
    kind: str  # "http" or "python"

    @classmethod
    def from_proto(cls, msg: actions_pb2.FunctionInfo) -> FunctionInfo:
        schema = json.loads(msg.parameters_schema) if msg.parameters_schema else {}
        return cls(msg.name, msg.description, schema, msg.method, msg.path, msg.inverse, msg.kind, proto=msg)


@dataclass(frozen=True)
class FunctionSetInfo(_Model[actions_pb2.FunctionSet]):
    """A function set prompts may name in the functions mode."""

    name: str
    description: str
    rules: str  # the http rule set its calls' undos need
    source: str  # "shipped", a file of [planner] functions_dirs, or "put"
    functions: tuple[FunctionInfo, ...]

    @classmethod
    def from_proto(cls, msg: actions_pb2.FunctionSet) -> FunctionSetInfo:
        functions = tuple(FunctionInfo.from_proto(f) for f in msg.functions)
        return cls(msg.name, msg.description, msg.rules, msg.source, functions, proto=msg)
