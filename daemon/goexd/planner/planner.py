"""The planner: a prompt and what the session holds in, an action and its inverse out, with the whole exchange.

Rules:
- the endpoint is the configured one, else the embedded model (planner/local_model.py), started on first use;
- at first use it is probed for what it supports (structured output with a JSON schema, tool calls), unless
  [planner] mode names the transport; the chat mode asks for the plan's schema by structured output where there
  is one, else by a single "plan" tool, else in words; the functions mode by tool calls, else by a schema of the
  choice, else in words. goexd checks every answer against the schema whatever the endpoint promised;
- an answer goexd refuses (not JSON, not valid for the schema, an action the resource refuses) is asked for again
  with the refusal, at most [planner] retries times; then planning fails with the last answer attached;
- an endpoint's failure (unreachable, a refused key, a rate limit, a timeout) fails planning at once, saying which;
- everything sent and received is redacted by the vault's redactor before it is recorded, and nothing the model
  is sent comes from anywhere but the caller's context (planner/context.py says what that holds).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from goexd.config import PlannerConfig
from goexd.domain import codec
from goexd.domain.errors import FailedPrecondition, GoexError, InvalidArgument, Unavailable
from goexd.domain.models import ActionKind, ActionSpec, EgressRequest
from goexd.domain.plans import PlanAttempt, PlanExchange, PlanMode, PromptRequest, Transport
from goexd.planner import answers, context, functions, schemas
from goexd.planner.answers import Plan, Refused
from goexd.planner.endpoint import Answer, Endpoint, Message, answer_json
from goexd.planner.local_model import LocalModel, find_model

log = logging.getLogger("goexd.planner")

MAX_RECORDED_ANSWER = 16 * 1024  # characters of one answer kept in the record
MAX_RECORDED_REQUEST = 64 * 1024
MAX_PROMPT = 8000  # characters of a prompt
PLAN_TOOL = "plan"

INTRO = (
    "You are the planner of goexd, a runtime that runs actions on a person's resources and can undo them. "
    "Turn the person's request into exactly one action on one of the resources below."
)


@dataclass(frozen=True)
class Capabilities:
    json_schema: bool
    tools: bool
    # Its structured output takes length and number bounds (llama.cpp bounds the answer by them; some hosted APIs
    # refuse them in a strict schema): without, they are left out of what is sent, and goexd still checks them.
    bounds: bool = True


@dataclass(frozen=True)
class Context:
    """What the engine tells the planner about the session (all of it LLM-safe: see planner/context.py)."""

    targets: Sequence[schemas.Target]
    described: Sequence[context.Described]
    recent: Sequence[str] = ()
    secret_names: Sequence[str] = ()
    http_resources: Sequence[str] = ()  # the session's http resources (functions mode calls one)
    fs_resources: Sequence[str] = ()  # its workspaces (a python function runs over one)


class PlanningFailed(FailedPrecondition):
    """No plan: the endpoint failed (`cause`, its own status), or no answer was taken (FAILED_PRECONDITION).
    `exchange` holds all that happened."""

    def __init__(self, message: str, exchange: PlanExchange, cause: GoexError | None = None) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.cause = cause


Check = Callable[[Plan], None]  # the engine's checks of a plan on its resource (InvalidArgument when refused)


@dataclass
class _Attempting:
    """One planning: the conversation so far and the attempts recorded."""

    exchange: PlanExchange
    messages: list[Message]
    attempts: list[PlanAttempt] = field(default_factory=list)


class Planner:
    def __init__(
        self,
        cfg: PlannerConfig,
        api_key: Callable[[str], str],
        redact: Callable[[str], str],
        function_sets: functions.FunctionSets,
    ) -> None:
        """`api_key(base_url)`: the key to send there (from the vault, for that host), "" for none."""
        self.cfg = cfg
        self._api_key = api_key
        self._redact = redact
        self.function_sets = function_sets
        self._lock = threading.Lock()
        self._endpoint: Endpoint | None = None
        self._local: LocalModel | None = None
        self._model = cfg.model
        self._caps: Capabilities | None = None

    # ------------------------------------------------------------ the endpoint

    def _connect(self) -> tuple[Endpoint, str, Capabilities]:
        with self._lock:
            if self._endpoint is None:
                if self.cfg.base_url:
                    url = self.cfg.base_url
                    self._endpoint = Endpoint(url, lambda: self._api_key(url), self.cfg.timeout_s)
                else:
                    if self._local is None:
                        self._local = LocalModel(
                            find_model(self.cfg.local_model), self.cfg.local_threads, self.cfg.local_context
                        )
                    local = self._local
                    self._endpoint = Endpoint(
                        local.url(), lambda: local.key, self.cfg.timeout_s, local.shown_as, trust_env=False
                    )
            if not self._model:
                listed = self._endpoint.models()
                if not listed:
                    raise FailedPrecondition(f"the planner endpoint {self._endpoint.shown_as} lists no model")
                self._model = listed[0]
            if self._caps is None:
                self._caps = self._probe(self._endpoint)
            return self._endpoint, self._model, self._caps

    def _probe(self, endpoint: Endpoint) -> Capabilities:
        mode = self.cfg.mode
        if mode != "auto":
            return Capabilities(json_schema=mode == "json_schema", tools=mode == "tools")
        asked = [{"role": "user", "content": 'Answer with {"ok": true}.'}]
        schema = {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"],
            "additionalProperties": False,
        }
        bounded = {**schema, "properties": {"ok": {"type": "boolean"}, "word": {"type": "string", "maxLength": 8}}}
        bounded["required"] = ["ok", "word"]
        structured = bounds = False
        for tried in (bounded, schema):
            try:
                got = endpoint.chat(self._model, asked, 24, 0.0, response_format=_format(tried, "probe"))
                value = answers.parse_json(got.text)
                structured, bounds = isinstance(value, dict) and "ok" in value, tried is bounded
                break
            except FailedPrecondition as exc:  # a request it rejects: without bounds, or not at all
                log.info("planner endpoint %s: no structured output like %s (%s)", endpoint.shown_as, tried, exc)
            except Refused as exc:  # it took the request, and answered outside the schema: no structured output
                log.info("planner endpoint %s: no structured output (%s)", endpoint.shown_as, exc)
                break
        tool = {"type": "function", "function": {"name": "ok", "description": "say ok", "parameters": schema}}
        calls = False
        try:
            got = endpoint.chat(self._model, asked, 40, 0.0, tools=[tool], tool_choice="required")
            calls = any(c.name == "ok" for c in got.tool_calls)
        except FailedPrecondition as exc:
            log.info("planner endpoint %s: no tool calls (%s)", endpoint.shown_as, exc)
        caps = Capabilities(structured, calls, bounds or not structured)
        log.info("planner endpoint %s, model %s: %s", endpoint.shown_as, self._model, caps)
        return caps

    def _forget(self, endpoint: Endpoint) -> None:
        with self._lock:
            if self._endpoint is endpoint:
                self._endpoint = None
                log.warning("%s cannot be reached: it is started again at the next prompt", endpoint.shown_as)
        endpoint.close()

    def close(self) -> None:
        with self._lock:
            if self._endpoint is not None:
                self._endpoint.close()
            if self._local is not None:
                self._local.close()

    # ------------------------------------------------------------ planning

    def plan(
        self, request: PromptRequest, ctx: Context, check: Check, cancel: threading.Event | None = None
    ) -> tuple[Plan, PlanExchange]:
        """The plan of `request` on the session `ctx` describes, checked by `check`, and its exchange; raises
        PlanningFailed (with the exchange) when none was made, InvalidArgument for a request that cannot be asked."""
        if not request.prompt.strip():
            raise InvalidArgument("spec.prompt.prompt", "must not be empty")
        if len(request.prompt) > MAX_PROMPT:
            raise InvalidArgument("spec.prompt.prompt", f"at most {MAX_PROMPT} characters")
        mode = PlanMode.FUNCTIONS if request.functions else PlanMode.CHAT
        fset = None
        if request.functions:
            fset = self.function_sets.get(request.functions, "spec.prompt.functions")
        if fset is None and not ctx.targets:
            raise InvalidArgument("spec.resource", "the session has no resource a prompt can act on")
        started = time.time()
        shown = self.cfg.base_url or "embedded"
        blank = PlanExchange(self._redact(request.prompt), mode, shown, self._model, Transport.JSON, started_at=started)
        try:
            endpoint, model, caps = self._connect()
        except GoexError as exc:
            failed = replace(blank, error=self._redact(str(exc)))
            raise PlanningFailed(str(exc), failed, exc) from None
        transport = _transport(mode, caps)
        # Redacted before it is sent, not only before it is recorded: a sample row, a file name or the prompt itself
        # may hold a vault value (the resources' describe() holds no credential of theirs, by the seam's rule).
        prompt = self._redact(request.prompt)
        system = self._redact(self._system(ctx, fset, transport, self.cfg.request_tokens - context.tokens(prompt)))
        messages: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        request_text = f"[system]\n{system}\n\n[user]\n{prompt}"[:MAX_RECORDED_REQUEST]
        run = _Attempting(
            replace(
                blank,
                endpoint=endpoint.shown_as,
                model=model,
                transport=transport,
                request=request_text,
                request_tokens=context.tokens(system) + context.tokens(prompt),
            ),
            messages,
        )
        for attempt in range(self.cfg.retries + 1):
            if cancel is not None and cancel.is_set():
                raise self._failed(run, "cancelled while planning")
            try:
                got = self._ask(endpoint, model, run.messages, transport, ctx, fset, caps)
            except GoexError as exc:
                if isinstance(exc, Unavailable) and self._local is not None:
                    self._forget(endpoint)  # the embedded server died: the next prompt starts it again
                raise self._failed(run, str(exc), exc) from None
            text = answer_json(got)
            try:
                plan = self._accept(got, transport, ctx, fset)
                check(plan)
            except (Refused, InvalidArgument) as exc:
                why = str(exc)
                run.attempts.append(self._attempt(text, why, got))
                if attempt < self.cfg.retries:
                    run.messages = [
                        *run.messages,
                        {"role": "assistant", "content": self._redact(text[:MAX_RECORDED_ANSWER])},
                        {"role": "user", "content": self._redact(f"goexd refused that answer: {why}. Answer again.")},
                    ]
                continue
            run.attempts.append(self._attempt(text, "", got))
            recorded = replace(
                run.exchange,
                attempts=tuple(run.attempts),
                plan=self._redact(_plan_json(plan)),
                function=plan.function,
            )
            return plan, recorded
        last = run.attempts[-1].error if run.attempts else "no answer"
        raise self._failed(run, f"the model gave no usable plan in {len(run.attempts)} answers; the last: {last}")

    def _failed(self, run: _Attempting, why: str, cause: GoexError | None = None) -> PlanningFailed:
        redacted = self._redact(why)
        return PlanningFailed(redacted, replace(run.exchange, attempts=tuple(run.attempts), error=redacted), cause)

    def _attempt(self, text: str, error: str, got: Answer) -> PlanAttempt:
        return PlanAttempt(
            self._redact(text)[:MAX_RECORDED_ANSWER],
            self._redact(error),
            got.prompt_tokens,
            got.completion_tokens,
            round(got.latency_s, 4),
        )

    def _system(self, ctx: Context, fset: functions.FunctionSet | None, transport: Transport, budget: int) -> str:
        if fset is None:
            rules = [line for t in ctx.targets for line in (schemas.target_help(t), schemas.target_example(t))]
            schema = schemas.plan_schema(ctx.targets, self.cfg.max_tokens)
            rules.append('"description" is one short line saying what the action does')
        else:
            rules = [
                f"Pick exactly one function of the set {fset.name!r} and fill its arguments.",
                *functions.catalogue(fset),
            ]
            schema = functions.choice_schema(fset)
        if transport is Transport.JSON:  # nothing constrains the answer: the schema is said in words
            said = json.dumps(schema)
            rules.append(f"Answer with one JSON object and nothing else, matching this JSON Schema: {said}")
        elif transport is Transport.JSON_SCHEMA:
            rules.append("Answer with the JSON object the response format asks for.")
        return context.system_message(INTRO, rules, ctx.described, ctx.recent, ctx.secret_names, budget)

    def _ask(
        self,
        endpoint: Endpoint,
        model: str,
        messages: Sequence[Message],
        transport: Transport,
        ctx: Context,
        fset: functions.FunctionSet | None,
        caps: Capabilities,
    ) -> Answer:
        limit, heat = self.cfg.max_tokens, self.cfg.temperature
        if fset is None:
            schema = schemas.plan_schema(ctx.targets, self.cfg.max_tokens)
            if transport is Transport.JSON_SCHEMA:
                return endpoint.chat(model, messages, limit, heat, response_format=_format(schema, "plan", caps))
            if transport is Transport.TOOLS:
                tool = {"type": "function", "function": {"name": PLAN_TOOL, "description": INTRO, "parameters": schema}}
                choice = {"type": "function", "function": {"name": PLAN_TOOL}}
                return endpoint.chat(model, messages, limit, heat, tools=[tool], tool_choice=choice)
            return endpoint.chat(model, messages, limit, heat, response_format={"type": "json_object"})
        if transport is Transport.TOOLS:
            return endpoint.chat(model, messages, limit, heat, tools=functions.tools(fset), tool_choice="required")
        if transport is Transport.JSON_SCHEMA:
            choice = functions.choice_schema(fset)
            schema = {"type": "object", "properties": {"call": choice}, "required": ["call"]}
            schema["additionalProperties"] = False
            return endpoint.chat(model, messages, limit, heat, response_format=_format(schema, "call", caps))
        return endpoint.chat(model, messages, limit, heat, response_format={"type": "json_object"})

    def _accept(self, got: Answer, transport: Transport, ctx: Context, fset: functions.FunctionSet | None) -> Plan:
        """The answer as a plan, or Refused naming what is wrong with it."""
        if fset is None:
            if transport is Transport.TOOLS:
                if not got.tool_calls:
                    raise Refused(f"no call of the {PLAN_TOOL!r} tool in the answer")
                value = answers.parse_json(got.tool_calls[0].arguments)
            else:
                value = answers.parse_json(got.text)
            answers.check_schema(value, schemas.plan_schema(ctx.targets, self.cfg.max_tokens))
            return answers.chat_plan(value, ctx.targets)
        if transport is Transport.TOOLS:
            if not got.tool_calls:
                raise Refused("no function call in the answer")
            call = got.tool_calls[0]
            name, args = call.name, answers.parse_json(call.arguments or "{}")
        else:
            value = answers.parse_json(got.text)
            value = value.get("call", value) if isinstance(value, dict) else value
            if not isinstance(value, dict) or not isinstance(value.get("function"), str):
                raise Refused('answer: {"function": NAME, "arguments": {...}} expected')
            name, args = value["function"], value.get("arguments", {})
        return self.function_plan(fset, name, args, ctx)

    @staticmethod
    def function_plan(fset: functions.FunctionSet, name: str, args: Any, ctx: Context) -> Plan:
        """A function call as an http action: the function known, its arguments valid for its schema."""
        fn = fset.functions.get(name)
        if fn is None:
            raise Refused(f"function: {name!r} is not one of {', '.join(fset.functions)}")
        answers.check_schema(args, fn.parameters, root="arguments")
        label = f"{fset.name}.{fn.name}"
        if fn.kind == "python":  # its arguments go to the code as JSON on stdin, never into the code
            if len(ctx.fs_resources) != 1:
                raise InvalidArgument("spec.resource", "a python function runs over one workspace: name it")
            egress = EgressRequest(resources=fn.egress) if fn.egress else None
            spec = ActionSpec(
                ActionKind.PYTHON,
                code=fn.code,
                stdin=json.dumps(args).encode(),
                resource=ctx.fs_resources[0],
                description=label,
                egress=egress,
            )
            return Plan(spec, None, ctx.fs_resources[0], label, label)
        if len(ctx.http_resources) != 1:
            raise InvalidArgument(
                "spec.resource",
                f"functions mode calls an http resource: name one of {', '.join(ctx.http_resources) or 'none'}",
            )
        method, path, query, body = fn.call(args)
        spec = answers.http_spec(method, path, query, body, ctx.http_resources[0], f"{fset.name}.{fn.name}")
        return Plan(spec, None, ctx.http_resources[0], f"{fset.name}.{fn.name}", f"{fset.name}.{fn.name}")


_BOUNDS = frozenset({"maxLength", "minLength", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


def _format(schema: Mapping[str, Any], name: str, caps: Capabilities | None = None) -> dict[str, Any]:
    sent = dict(schema) if caps is None or caps.bounds else _unbounded(schema)
    return {"type": "json_schema", "json_schema": {"name": name, "schema": sent, "strict": True}}


def _unbounded(value: Any) -> Any:
    """`value` without length and number bounds (what some strict structured outputs refuse)."""
    if isinstance(value, Mapping):
        return {k: _unbounded(v) for k, v in value.items() if k not in _BOUNDS}
    if isinstance(value, list):
        return [_unbounded(v) for v in value]
    return value


def _transport(mode: PlanMode, caps: Capabilities) -> Transport:
    if mode is PlanMode.FUNCTIONS and caps.tools:
        return Transport.TOOLS
    if caps.json_schema:
        return Transport.JSON_SCHEMA
    return Transport.TOOLS if caps.tools else Transport.JSON


def _plan_json(plan: Plan) -> str:
    return json.dumps(
        {
            "resource": plan.resource,
            "description": plan.description,
            "function": plan.function,
            "action": codec.spec_to_json(plan.forward),
            "inverse": codec.spec_to_json(plan.inverse) if plan.inverse is not None else None,
        },
        ensure_ascii=False,
    )
