"""The synchronous client."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import grpc

from goex import _requests as rq
from goex import _rpc
from goex._enums import ActionState, SecretKind
from goex._exceptions import DeadlineExceeded, FailedPrecondition, GoexError, Internal, from_rpc_error
from goex._models import (
    Action,
    ActionEvent,
    ClosedSession,
    ResourceDescription,
    Reversibility,
    Session,
    action_event_from_proto,
)
from goex._rpc import Req, Resp
from goex._socket import resolve_target
from goex._specs import (
    ActionBody,
    ActionSpec,
    Egress,
    Http,
    Injection,
    Limits,
    Prompt,
    Python,
    ResourceSpec,
    Shell,
    Sql,
)
from goex.v1 import actions_pb2, admin_pb2, secrets_pb2, sessions_pb2

if TYPE_CHECKING:
    # Imported where used: a `goex run` needs none of them (start-up time, see bench/cli_startup_bench.py).
    from goex._admin_models import GcResult, Health, PolicyCheck, Stats, StopResult
    from goex._diffs import Diff
    from goex._pairs import PairHistory
    from goex._prompts import FunctionSetInfo, PlanReview
    from goex._secret_models import OAuthStart, SecretInfo
    from goex._set_asides import SetAside, SetAsideRestored

__all__ = [
    "CANCEL_SETTLE_S",
    "CHANNEL_OPTIONS",
    "Client",
    "RunFollower",
    "interrupted_action",
    "interrupted_action_id",
    "interrupted_was_cancelled",
    "note_cancelled",
]

# After a cancel, how long `wait` waits for the action to be stopped and rolled back before it re-raises.
CANCEL_SETTLE_S = 10.0


def note_cancelled(
    exc: BaseException, action_id: str, final: Action | None, stopped: bool, failure: BaseException | None = None
) -> None:
    """Say on `exc` what became of the action a wait it interrupted had cancelled (`final`: as goexd left it,
    None when that is unknown because of `failure`; `stopped`: the cancel reached it while it ran)."""
    exc.goex_action_id = action_id  # type: ignore[attr-defined]
    if final is None:
        exc.add_note(f"goex: asked goexd to cancel action {action_id}; its outcome is unknown ({failure!r})")
        return
    exc.goex_action = final  # type: ignore[attr-defined]
    exc.goex_cancelled = stopped  # type: ignore[attr-defined]
    if not stopped:
        exc.add_note(f"goex: action {action_id} had finished before it could be cancelled: {final.state}")
    elif final.state.is_active:
        exc.add_note(f"goex: asked goexd to cancel action {action_id}; it is still {final.state}")
    else:
        exc.add_note(f"goex: action {action_id} was cancelled: {final.state}")


def interrupted_was_cancelled(exc: BaseException) -> bool:
    """Whether the cancel that `exc` interrupted a wait for reached the action while it ran (else it had ended)."""
    return getattr(exc, "goex_cancelled", False) is True


def interrupted_action_id(exc: BaseException) -> str | None:
    """The id of the action a `Client.submit`/`wait` interrupted by `exc` had cancelled; None when `exc` did not
    come from there, or came before goexd had accepted the action."""
    action_id = getattr(exc, "goex_action_id", None)
    return action_id if isinstance(action_id, str) else None


def interrupted_action(exc: BaseException) -> Action | None:
    """The action a `Client.submit`/`wait` interrupted by `exc` (KeyboardInterrupt, a deadline, ...) had
    cancelled, as it was once goexd stopped it (or CANCEL_SETTLE_S later); None when `exc` did not come
    from there. The exception's notes say the same in words."""
    action = getattr(exc, "goex_action", None)
    return action if isinstance(action, Action) else None


# How long an interruption that came before the accepted message was read waits for it (see _read_late_accept).
ACCEPT_GRACE_S = 2.0


def _read_late_accept(call: Iterable[actions_pb2.RunActionEvent], follower: RunFollower) -> None:
    """An interruption before the accepted message was read: goexd may have accepted the action and this process
    been slow to read it (a loaded machine). Read on, for at most ACCEPT_GRACE_S, so the cancel can name the
    action; a stream that ends or fails (goexd refused it) ends the wait at once. Nothing else is fed."""

    def read() -> None:
        try:
            for msg in call:
                if msg.WhichOneof("event") == "accepted":
                    follower.feed(msg)
                    return
        except Exception:  # noqa: S110 - a refusal or a cancelled stream: there is nothing to name
            pass

    reader = threading.Thread(target=read, name="goex-late-accept", daemon=True)
    reader.start()
    reader.join(ACCEPT_GRACE_S)


class RunFollower:
    """What a RunAction stream has told so far: the accepted action's id, then its events (to `on_event`), then
    the action with its result. Shared by the sync and asyncio clients."""

    def __init__(self, on_event: Callable[[ActionEvent], None] | None) -> None:
        self.on_event = on_event
        self.action_id: str | None = None
        self.finished: Action | None = None

    def feed(self, msg: actions_pb2.RunActionEvent) -> None:
        kind = msg.WhichOneof("event")
        if kind == "accepted":
            self.action_id = msg.accepted.id
        elif kind == "progress":
            event = action_event_from_proto(msg.progress)
            if event is not None and self.on_event is not None:
                self.on_event(event)
        elif kind == "finished":
            self.finished = Action.from_proto(msg.finished)

    def deadline_error(self, exc: DeadlineExceeded, timeout: float | None) -> DeadlineExceeded:
        if self.action_id is None:
            return exc
        return DeadlineExceeded(
            f"action {self.action_id} did not finish within the client's timeout ({timeout} s)",
            action_id=self.action_id,
        )

    def accepted_id(self) -> str:
        """The action's id, once the stream has ended without an error."""
        if self.action_id is None:
            raise Internal("goexd ended the RunAction stream without accepting the action")
        return self.action_id

    def to_cancel(self, exc: BaseException) -> str | None:
        """The action to cancel because `exc` ended the wait: a deadline or an interruption can; a failed call
        (goexd gone, ...) cannot. None before goexd accepted it."""
        if isinstance(exc, DeadlineExceeded) or not isinstance(exc, GoexError):
            return self.action_id
        return None


# A local socket: let big timelines (ListActions carries outputs) through.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


class Client:
    """A connection to goexd.

    `socket_path` defaults to $GOEX_SOCKET, then $XDG_RUNTIME_DIR/goex/goexd.sock, then
    /tmp/goex-<uid>/goexd.sock; `target` is any gRPC target instead (e.g. for tests).
    `timeout` (seconds) bounds each unary call, including a blocking `submit`; watching
    an action is never bounded by it. Every failure raises a `goex.GoexError`.

        with goex.Client() as client:
            session = client.create_session(fs="/path/to/workspace")
            action = client.run_shell(session.id, ["make", "test"])
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        target: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self._target, self.socket_path = resolve_target(socket_path, target)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self._target, options=CHANNEL_OPTIONS)
        self._unary: dict[str, Any] = {}  # method path -> its multi-callable on this channel, built on first use

    @property
    def target(self) -> str:
        return self._target

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(target={self._target!r})"

    # ------------------------------------------------------------ plumbing

    def _error(self, err: grpc.RpcError) -> GoexError:
        return from_rpc_error(err, socket_path=self.socket_path, target=self._target)

    def _call(self, method: _rpc.Method[Req, Resp], request: Req) -> Resp:
        return self._call_within(method, request, self.timeout)

    def _call_within(self, method: _rpc.Method[Req, Resp], request: Req, timeout: float | None) -> Resp:
        call: grpc.UnaryUnaryMultiCallable[Req, Resp] | None = self._unary.get(method.path)
        if call is None:
            call = self._unary[method.path] = method.unary(self._channel)
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as err:
            raise self._error(err) from err

    # ------------------------------------------------------------ sessions

    def create_session(
        self,
        *,
        fs: str | os.PathLike[str] | None = None,
        db: str | None = None,
        http: str | None = None,
        label: str = "",
        limits: Limits | None = None,
        resources: Iterable[ResourceSpec] = (),
        policy: str | None = None,
        reuse: bool = False,
    ) -> Session:
        """Open a session over `fs` (a workspace directory), `db` (a database URL: "sqlite:///path/app.db",
        "postgresql://..."), `http` (a REST service's base URL) and/or `resources` (`goex.ResourceSpec.fs/db/http`
        for names, secrets, strategies).

        `policy` is the session's damage-confinement policy as TOML text. `reuse`: goexd returns the open (or
        expired) session over exactly the same resources instead of a new one, in one step (get-or-create;
        `Session.reused` says so; its label, limits and policy stay as they are, and a policy or limits given that
        differ are FailedPrecondition, as are resources that overlap a session's differently). What goexd warns
        of at open is in `Session.warnings`.
        """
        req = rq.create_session(fs=fs, db=db, http=http, label=label, limits=limits, resources=resources, policy=policy)
        req.reuse = reuse
        resp = self._call(_rpc.CREATE_SESSION, req)
        return replace(Session.from_proto(resp.session), warnings=tuple(resp.warnings), reused=resp.reused)

    def get_session(self, session_id: str) -> Session:
        req = sessions_pb2.GetSessionRequest(session_id=session_id)
        return Session.from_proto(self._call(_rpc.GET_SESSION, req).session)

    def list_sessions(self, *, include_closed: bool = False) -> list[Session]:
        sessions: list[Session] = []
        token = ""
        for _ in range(rq.MAX_PAGES):
            req = sessions_pb2.ListSessionsRequest(include_closed=include_closed, page_token=token)
            resp = self._call(_rpc.LIST_SESSIONS, req)
            sessions.extend(Session.from_proto(s) for s in resp.sessions)
            if not resp.next_page_token or resp.next_page_token == token:
                break
            token = resp.next_page_token
        return sessions

    def close_session(self, session_id: str, mode: rq.CloseModeArg = None) -> ClosedSession:
        """Close a session; `mode` "commit" or "undo" first resolves its pending actions.

        Without a mode the daemon refuses (FailedPrecondition) while actions are pending.
        """
        resp = self._call(_rpc.CLOSE_SESSION, rq.close_session(session_id, mode))
        return ClosedSession.from_proto(resp)

    def describe_session(self, session_id: str, *, include_samples: bool = False) -> list[ResourceDescription]:
        """What a planner would be told about the session's resources (no secrets)."""
        req = sessions_pb2.DescribeSessionRequest(session_id=session_id, include_samples=include_samples)
        resp = self._call(_rpc.DESCRIBE_SESSION, req)
        return [ResourceDescription.from_proto(r) for r in resp.resources]

    # ------------------------------------------------------------ actions

    def submit(
        self,
        session_id: str,
        action: ActionBody | ActionSpec,
        *,
        resource: str | None = None,
        inverse: ActionBody | ActionSpec | None = None,
        detach: bool = False,
        limits: Limits | None = None,
        description: str | None = None,
        approval: str = "",
        egress: Egress | None = None,
        cancel_when_unwatched: bool = False,
        on_event: Callable[[ActionEvent], None] | None = None,
        live_output: bool = False,
    ) -> Action:
        """Run `action` (`goex.Shell([...])`, `goex.Python("...")`, `goex.Sql`, ...) in the session.

        Blocks until the action has a result unless `detach`, in which case it returns
        the PROPOSED action at once; follow it with `watch_action` and `get_action`
        (with `cancel_when_unwatched`, goexd cancels it once no watch follows it: a
        follower killed outright leaves nothing running). `egress` (shell and python
        actions) gives it network through goexd's egress proxy; its requests come back
        in `Action.egress`. A blocking submit is cancelled when the wait is given up
        (`goex.interrupted_action(exc)` is then the action as the cancel left it), or
        this process dies. `on_event` sees its state changes as they happen and, with
        `live_output`, its output chunks as they come (the result carries the captured
        output either way).
        """
        req = rq.submit(
            session_id,
            action,
            resource=resource,
            inverse=inverse,
            detach=detach,
            limits=limits,
            description=description,
            approval=approval,
            egress=egress,
        )
        req.cancel_when_unwatched = detach and cancel_when_unwatched
        if detach or req.spec.WhichOneof("body") == "http":
            # An http request is answered by goexd in one call (a refused pre-image raises there).
            return Action.from_proto(self._call(_rpc.SUBMIT_ACTION, req).action)
        return self._run(rq.run(req, live_output), on_event)

    def _run(self, req: actions_pb2.RunActionRequest, on_event: Callable[[ActionEvent], None] | None) -> Action:
        """Submit and follow on one RunAction stream. Given up early (an exception raised into it, the timeout),
        the action is cancelled by its id and waited for before the exception goes on, as `wait` does; a
        process killed outright ends the stream, which cancels it in goexd."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        follower = RunFollower(on_event)
        call = _rpc.RUN_ACTION.unary_stream(self._channel)(req, timeout=self.timeout)
        try:
            try:
                try:
                    for msg in call:
                        follower.feed(msg)
                except grpc.RpcError as err:
                    raise self._error(err) from err
            except DeadlineExceeded as exc:
                raise follower.deadline_error(exc, self.timeout) from exc
            final = follower.finished or self.get_action(follower.accepted_id())
            return self._settled(final, deadline)
        except BaseException as exc:
            if follower.action_id is None and not isinstance(exc, GoexError):
                _read_late_accept(call, follower)
            if (action_id := follower.to_cancel(exc)) is not None:
                self._cancel_after(exc, action_id)
            raise
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped

    def wait(
        self,
        action_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[ActionEvent], None] | None = None,
        cancel_on_interrupt: bool = True,
    ) -> Action:
        """Follow a submitted action until it has a result, and return it (as `get_action` would).

        `on_event` sees each state change and output chunk as it comes. If the wait ends early (KeyboardInterrupt
        or any other exception raised into it, e.g. by a signal handler; `timeout` seconds passing, which raises
        DeadlineExceeded) and `cancel_on_interrupt`, the action is cancelled in goexd and waited for (at most
        CANCEL_SETTLE_S) before the exception goes on, carrying the action (`goex.interrupted_action(exc)`) and
        a note naming it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            try:
                for event in self.watch_action(action_id, timeout=timeout):
                    if on_event is not None:
                        on_event(event)
                return self._settled(self.get_action(action_id), deadline)
            except DeadlineExceeded as exc:
                raise DeadlineExceeded(
                    f"action {action_id} did not finish within the client's timeout ({timeout} s)", action_id=action_id
                ) from exc
        except BaseException as exc:
            # A failed call (goexd gone, ...) cannot cancel either; a deadline or an interruption can.
            if cancel_on_interrupt and (isinstance(exc, DeadlineExceeded) or not isinstance(exc, GoexError)):
                self._cancel_after(exc, action_id)
            raise

    def _settled(self, action: Action, deadline: float | None) -> Action:
        """`action` once it has left the active states (the watch ends as it does; a lagging state is polled)."""
        pause = 0.002
        while action.state.is_active:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(f"action {action.id} did not finish within the client's timeout")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            action = self.get_action(action.id)
        return action

    def _cancel_after(self, exc: BaseException, action_id: str) -> None:
        """Cancel the action an interrupted wait was following, wait for the outcome, and say so on `exc`."""
        stopped = True
        try:
            try:
                self.cancel(action_id)
            except FailedPrecondition:
                stopped = False  # it ended between the interruption and the cancel: nothing to stop
            final = self._settled(self.get_action(action_id), time.monotonic() + CANCEL_SETTLE_S)
        except BaseException as second:  # goexd gone, a second Ctrl-C, the settle deadline: say what is known
            note_cancelled(exc, action_id, None, stopped, second)
            return
        note_cancelled(exc, action_id, final, stopped)

    def run_shell(
        self,
        session_id: str,
        argv: Iterable[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: bytes = b"",
        resource: str | None = None,
        inverse: Iterable[str] | None = None,
        detach: bool = False,
        limits: Limits | None = None,
        secrets: Iterable[str] = (),
        hosts: Iterable[str] = (),
        http_resources: Iterable[str] = (),
        approval: str = "",
    ) -> Action:
        """`submit` a shell action: `argv` runs as-is (wrap in ["sh", "-c", ...] for a shell).

        `secrets` (vault names, seen inside as "goex-secret:NAME") and `hosts` give it
        network through the egress proxy; without either it has none. `http_resources` names
        the session's http resources it may call through the proxy: their policy applies to each
        request, and each call is recorded with its inverse and undone with the action.
        `approval` is the explicit approval (who and why) for an action (or a call) the
        session's policy holds for one.
        """
        return self.submit(
            session_id,
            Shell(argv, env=env, stdin=stdin),
            resource=resource,
            inverse=Shell(inverse) if inverse is not None else None,
            detach=detach,
            limits=limits,
            egress=rq.egress(secrets, hosts, http_resources),
            approval=approval,
        )

    def run_python(
        self,
        session_id: str,
        code: str,
        *,
        env: Mapping[str, str] | None = None,
        stdin: bytes = b"",
        resource: str | None = None,
        detach: bool = False,
        limits: Limits | None = None,
        secrets: Iterable[str] = (),
        hosts: Iterable[str] = (),
        http_resources: Iterable[str] = (),
        approval: str = "",
    ) -> Action:
        """`submit` a python action: `code` runs with the sandbox's python3.

        `secrets`, `hosts` and `http_resources` give it network through the egress proxy, and
        `approval` approves it, as for `run_shell`.
        """
        return self.submit(
            session_id,
            Python(code, env=env, stdin=stdin),
            resource=resource,
            detach=detach,
            limits=limits,
            egress=rq.egress(secrets, hosts, http_resources),
            approval=approval,
        )

    def run_sql(
        self,
        session_id: str,
        sql: str,
        *,
        params: Iterable[str] = (),
        inverse: str | Sql | None = None,
        resource: str | None = None,
        detach: bool = False,
        limits: Limits | None = None,
        approval: str = "",
    ) -> Action:
        """`submit` a SQL action: `sql` (one statement or a script) runs in goexd on a database resource.

        `params` are bound to the placeholders of a single statement, as text. `inverse`
        is SQL that undoes it (a `goex.Sql` when it needs parameters of its own); under
        the inverse strategy goexd tests it first and runs it to undo. The rows and the
        affected-row count come back in `Action.sql`. `approval` is the explicit approval
        for a statement the session's policy holds for one.
        """
        body, undo = rq.sql_bodies(sql, params, inverse)
        return self.submit(
            session_id,
            body,
            resource=resource,
            inverse=undo,
            detach=detach,
            limits=limits,
            approval=approval,
        )

    def run_http(
        self,
        session_id: str,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        inverse: Http | None = None,
        resource: str | None = None,
        approval: str = "",
        detach: bool = False,
        limits: Limits | None = None,
    ) -> Action:
        """`submit` an HTTP action: goexd sends `method` `path` to an http resource of the session.

        `path` is relative to the resource's base URL and may not leave it; `query` and
        `headers` are sent as given (no credentials: goexd injects the resource's secret).
        `json` is the JSON body, as JSON text when a str, else any JSON-serialisable value
        (serialised with `json.dumps`; None sends none, the text "null" sends JSON null);
        `body` is a raw body instead (a str is sent as UTF-8). Under the inverse strategy
        goexd derives the inverse from the recorded response; `inverse` (a `goex.Http`)
        takes precedence. A 4xx/5xx answer fails the action; the response comes back in
        `Action.http` either way, the inverse in `Action.inverse`.
        """
        action, undo = rq.http_bodies(method, path, query=query, headers=headers, json=json, body=body, inverse=inverse)
        return self.submit(
            session_id,
            action,
            resource=resource,
            inverse=undo,
            detach=detach,
            limits=limits,
            approval=approval,
        )

    def get_action(self, action_id: str, *, session_id: str | None = None) -> Action:
        """The action `action_id` names: its id, a unique id prefix, or with `session_id` its seq number or
        "last" (goexd resolves them)."""
        req = actions_pb2.GetActionRequest(action_id=action_id, session_id=session_id or "")
        return Action.from_proto(self._call(_rpc.GET_ACTION, req).action)

    def list_actions(self, session_id: str, *, states: Iterable[ActionState | str] | None = None) -> list[Action]:
        """The session's timeline, oldest first; `states` filters (e.g. ["executed"])."""
        wanted = list(states or ())
        actions: list[Action] = []
        token = ""
        for _ in range(rq.MAX_PAGES):
            resp = self._call(_rpc.LIST_ACTIONS, rq.list_actions(session_id, wanted, token))
            actions.extend(Action.from_proto(a) for a in resp.actions)
            if not resp.next_page_token or resp.next_page_token == token:
                break
            token = resp.next_page_token
        return actions

    def watch_action(self, action_id: str, *, timeout: float | None = None) -> Iterator[ActionEvent]:
        """State changes and output chunks of an action until it leaves the running phase.

        Stopping the iteration early cancels the stream.
        """
        req = actions_pb2.WatchActionRequest(action_id=action_id)
        call = _rpc.WATCH_ACTION.unary_stream(self._channel)(req, timeout=timeout)
        try:
            for msg in call:
                event = action_event_from_proto(msg)
                if event is not None:
                    yield event
        except grpc.RpcError as err:
            raise self._error(err) from err
        finally:
            call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves it untyped

    def cancel(self, action_id: str) -> Action:
        """Stop a running (or queued) action: it ends FAILED, termination CANCELLED, rolled back.

        Returns the action as it was when the cancel was delivered; follow it with
        `watch_action` or `get_action` for the outcome. Raises FailedPrecondition when
        the action is no longer running.
        """
        req = actions_pb2.CancelActionRequest(action_id=action_id)
        return Action.from_proto(self._call(_rpc.CANCEL_ACTION, req).action)

    def commit(self, session_id: str, *, up_to: str | None = None) -> list[Action]:
        """Commit pending actions up to and including `up_to` (all when None)."""
        req = actions_pb2.CommitActionsRequest(session_id=session_id, up_to_action_id=up_to or "")
        return [Action.from_proto(a) for a in self._call(_rpc.COMMIT_ACTIONS, req).committed]

    def undo(
        self, session_id: str, action_id: str | None = None, *, cascade: bool = False, force: bool = False
    ) -> list[Action]:
        """Undo one pending action (the newest when None); returns the undone, newest first.

        Refused while a later pending action on the same resource exists unless `cascade` (on a
        workspace only one that changed some of the same paths counts). A workspace undo is
        three-way: each path the action changed goes back only where it is still as the action
        left it; a path changed since (by you or a later action) refuses the whole undo
        (FailedPrecondition naming the paths) unless `force`, which first sets those versions
        aside (`set_asides`, `restore_set_aside`): nothing is lost.
        """
        req = rq.undo(session_id, action_id, cascade, force)
        return [Action.from_proto(a) for a in self._call(_rpc.UNDO_ACTION, req).undone]

    def undo_to(self, action_id: str, *, force: bool = False, session_id: str | None = None) -> list[Action]:
        """Undo every pending action after `action_id` (which stays), newest first; `force` as for `undo`.
        `action_id` as for `get_action` (with `session_id`: a seq number or "last" too)."""
        req = rq.undo_to(action_id, force, session_id)
        return [Action.from_proto(a) for a in self._call(_rpc.UNDO_TO, req).undone]

    def prompt(
        self,
        session_id: str,
        prompt: str,
        *,
        functions: str = "",
        resource: str | None = None,
        detach: bool = False,
        limits: Limits | None = None,
        description: str | None = None,
        approval: str = "",
    ) -> Action:
        """Have goexd's planner turn `prompt` into an action (and its inverse, where the resource's strategy undoes
        by one), then run it as any action: policy, reversibility test, checkpoint, pending until commit or undo.
        `functions`: a function set's name (the model picks one of its functions). The action carries what it became
        (`spec`, `inverse`) and how (`plan`: the exchange with the model); no usable plan is an action FAILED."""
        return self.submit(
            session_id,
            Prompt(prompt, functions),
            resource=resource,
            detach=detach,
            limits=limits,
            description=description,
            approval=approval,
        )

    def plan(
        self,
        session_id: str,
        prompt: str,
        *,
        functions: str = "",
        resource: str | None = None,
        limits: Limits | None = None,
    ) -> PlanReview:
        """`prompt`'s plan for review; nothing runs on the resource: the action, its inverse, the policy's answer
        and the pair's test where nothing stays."""
        from goex._prompts import PlanReview

        req = rq.plan(session_id, prompt, functions=functions, resource=resource, limits=limits)
        return PlanReview.from_proto(self._call(_rpc.PLAN_ACTION, req))

    def put_function_set(self, toml: str, *, overwrite: bool = False) -> FunctionSetInfo:
        """Keep a function set (TOML text) in goexd for prompts in the functions mode; see `prompt(functions=)`."""
        from goex._prompts import FunctionSetInfo

        req = actions_pb2.PutFunctionSetRequest(toml=toml, overwrite=overwrite)
        return FunctionSetInfo.from_proto(self._call(_rpc.PUT_FUNCTION_SET, req).set)

    def function_sets(self) -> list[FunctionSetInfo]:
        """The function sets prompts may name: shipped, from goexd's functions_dirs, and put."""
        from goex._prompts import FunctionSetInfo

        listed = self._call(_rpc.LIST_FUNCTION_SETS, actions_pb2.ListFunctionSetsRequest())
        return [FunctionSetInfo.from_proto(s) for s in listed.sets]

    def delete_function_set(self, name: str) -> None:
        """Remove a set put with `put_function_set`."""
        self._call(_rpc.DELETE_FUNCTION_SET, actions_pb2.DeleteFunctionSetRequest(name=name))

    def test_reversibility(
        self,
        session_id: str,
        action: ActionBody | ActionSpec,
        *,
        inverse: ActionBody | ActionSpec | None = None,
        resource: str | None = None,
        limits: Limits | None = None,
    ) -> Reversibility:
        """Run `action` and its inverse on a throwaway fork of the resource and compare: passed, failed (the
        detail says what differs) or unknown (why it could not be tried). An http call is never tried on the
        service itself: unknown with its rule's plan, or tried on the resource's staging copy if it names one."""
        req = rq.test_reversibility(session_id, action, inverse=inverse, resource=resource, limits=limits)
        return Reversibility.from_proto(self._call(_rpc.TEST_REVERSIBILITY, req).reversibility)

    def diff(
        self,
        action_id: str,
        *,
        session_id: str | None = None,
        max_file_bytes: int = 0,
        max_total_bytes: int = 0,
        max_files: int = 0,
        context_lines: int | None = None,
        stat_only: bool = False,
    ) -> Diff:
        """What action `action_id` (as for `get_action`, `session_id` too) changed: a git-style unified diff per
        file of a workspace (`Diff.patch`), what goexd recorded for SQL and http actions (`Diff.summary`).
        Redacted like every output.

        The caps (0 = the daemon's defaults: 256 KiB a file, 4 MiB in all, 1000 files) cut at a line end
        and are named in `Diff.notes`; `stat_only` leaves the patch text out. Raises NotFound for an
        unknown action, FailedPrecondition when it left nothing to diff or its snapshots were collected.
        """
        from goex._diffs import Diff, DiffOptionsArgs, action_request

        options = DiffOptionsArgs(max_file_bytes, max_total_bytes, max_files, context_lines, stat_only)
        return Diff.from_proto(self._call(_rpc.GET_DIFF, action_request(action_id, options, session_id)))

    def diff_since_last(
        self,
        session_id: str,
        *,
        resource: str | None = None,
        max_file_bytes: int = 0,
        max_total_bytes: int = 0,
        max_files: int = 0,
        context_lines: int | None = None,
        stat_only: bool = False,
    ) -> Diff:
        """What changed in the session's workspace (`resource`: its fs resource, when it has several)
        since its latest pending or committed action left it: a person's own edits. `Diff.action_id`
        is that action. Caps as for `diff`."""
        from goex._diffs import Diff, DiffOptionsArgs, since_last_request

        options = DiffOptionsArgs(max_file_bytes, max_total_bytes, max_files, context_lines, stat_only)
        req = since_last_request(session_id, resource, options)
        return Diff.from_proto(self._call(_rpc.GET_DIFF, req))

    def set_asides(self, session_id: str) -> list[SetAside]:
        """What goexd overwrote of someone's work in the session's workspaces and kept, oldest first:
        by a forced undo, or where an action changed a file you changed while it ran. Each stays until
        restored or until the snapshot retention (gc.retention_hours) expires it."""
        from goex._set_asides import SetAside, list_request

        resp = self._call(_rpc.LIST_SET_ASIDES, list_request(session_id))
        return [SetAside.from_proto(s) for s in resp.set_asides]

    def restore_set_aside(self, session_id: str, set_aside_id: str, *, force: bool = False) -> SetAsideRestored:
        """Bring a set-aside back, then forget it. Three-way like undo: its paths go back where they are
        still as goexd left them; one changed since refuses (FailedPrecondition naming the paths) unless
        `force`, which sets those versions aside in turn. NotFound for an unknown id."""
        from goex._set_asides import SetAsideRestored, restore_request

        resp = self._call(_rpc.RESTORE_SET_ASIDE, restore_request(session_id, set_aside_id, force))
        return SetAsideRestored.from_proto(resp)

    def judge_pair(self, action_id: str, judgement: str, *, who: str = "", note: str = "") -> PairHistory:
        """Mark the undo of `action_id` (its action and inverse, as a pair) "right" or "wrong"; kept with the pair.
        When the same pair comes up again, "wrong" fails it even where its test passes (refused, or flagged where
        the policy lets a failed inverse run); "right" is shown beside its test, never instead of it.
        FailedPrecondition for an action without an inverse."""
        from goex._pairs import PairHistory, judge_request

        resp = self._call(_rpc.JUDGE_PAIR, judge_request(action_id, judgement, who, note))
        return PairHistory.from_proto(resp.history)

    def pair_history(self, action_id: str) -> PairHistory:
        """The verdicts and judgements kept for the pair of `action_id` (its action and inverse), oldest first."""
        from goex._pairs import PairHistory, history_request

        return PairHistory.from_proto((self._call(_rpc.GET_PAIR_HISTORY, history_request(action_id))).history)

    # ------------------------------------------------------------ secrets

    def put_secret(
        self,
        name: str,
        value: bytes | str | None,
        *,
        kind: SecretKind | str = SecretKind.GENERIC,
        injection: Injection | None = None,
        allowed_hosts: Iterable[str] = (),
        values: Mapping[str, bytes | str] | None = None,
        overwrite: bool = False,
    ) -> SecretInfo:
        """Store a secret in the vault; the value is never returned by any call."""
        from goex._secret_models import SecretInfo

        req = rq.put_secret(
            name,
            value,
            kind=kind,
            injection=injection,
            allowed_hosts=allowed_hosts,
            values=values,
            overwrite=overwrite,
        )
        return SecretInfo.from_proto(self._call(_rpc.PUT_SECRET, req).info)

    def list_secrets(self) -> list[SecretInfo]:
        from goex._secret_models import SecretInfo

        resp = self._call(_rpc.LIST_SECRETS, secrets_pb2.ListSecretsRequest())
        return [SecretInfo.from_proto(s) for s in resp.secrets]

    def delete_secret(self, name: str) -> None:
        self._call(_rpc.DELETE_SECRET, secrets_pb2.DeleteSecretRequest(name=name))

    def rotate_vault_key(self, new_passphrase: bytes = b"") -> None:
        """Re-encrypt the vault under a new key (a new random key file when empty)."""
        self._call(_rpc.ROTATE_VAULT_KEY, secrets_pb2.RotateVaultKeyRequest(new_passphrase=new_passphrase))

    def start_oauth(
        self,
        name: str,
        *,
        authorization_url: str,
        token_url: str,
        client_id: str,
        scopes: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
        client_secret: bytes | str = b"",
        overwrite: bool = False,
    ) -> OAuthStart:
        """Start an OAuth2 authorization-code flow (PKCE) that stores the token as secret `name`.

        Open the returned browser_url, then `await_oauth(name)`. `client_secret` is for
        confidential clients only (kept in the vault, never returned); `overwrite`
        replaces an existing secret of that name once the flow completes.
        """
        from goex._secret_models import OAuthStart

        req = rq.start_oauth(
            name,
            authorization_url=authorization_url,
            token_url=token_url,
            client_id=client_id,
            scopes=scopes,
            allowed_hosts=allowed_hosts,
            client_secret=client_secret,
            overwrite=overwrite,
        )
        return OAuthStart.from_proto(self._call(_rpc.START_OAUTH, req))

    def await_oauth(self, name: str, timeout: float | None = None) -> SecretInfo:
        """Wait for the flow `start_oauth(name)` started to finish; the stored secret's metadata.

        `timeout` (seconds) bounds the wait in goexd, which then raises DeadlineExceeded
        while the flow stays open; None waits until the flow itself expires. The client's
        own `timeout` does not apply.
        """
        from goex._secret_models import SecretInfo

        req, deadline = rq.await_oauth(name, timeout)
        return SecretInfo.from_proto(self._call_within(_rpc.AWAIT_OAUTH, req, deadline).info)

    # ------------------------------------------------------------ admin

    def health(self) -> Health:
        from goex._admin_models import Health

        return Health.from_proto(self._call(_rpc.GET_HEALTH, admin_pb2.GetHealthRequest()))

    def stats(self) -> Stats:
        from goex._admin_models import Stats

        return Stats.from_proto(self._call(_rpc.GET_STATS, admin_pb2.GetStatsRequest()))

    def gc(self, *, dry_run: bool = False) -> GcResult:
        """Remove snapshots and journal data no pending action needs and whose retention expired."""
        from goex._admin_models import GcResult

        return GcResult.from_proto(self._call(_rpc.RUN_GC, admin_pb2.RunGcRequest(dry_run=dry_run)))

    def stop(self, *, drain: bool = False, drain_timeout_s: float = 0.0) -> StopResult:
        """Stop goexd: what that interrupts (running actions, actions pending in a transaction-strategy
        database). With `drain`, goexd first refuses new sessions and actions and stops once those are
        resolved, or after `drain_timeout_s` (0: its drain_timeout_s)."""
        from goex._admin_models import StopResult

        req = admin_pb2.StopRequest(drain=drain)
        req.drain_timeout.FromNanoseconds(int(drain_timeout_s * 1e9))
        return StopResult.from_proto(self._call(_rpc.STOP, req))

    def check_policy(self, toml: str) -> PolicyCheck:
        """Validate policy TOML text; errors carry their line."""
        from goex._admin_models import PolicyCheck

        return PolicyCheck.from_proto(self._call(_rpc.CHECK_POLICY, admin_pb2.CheckPolicyRequest(toml=toml)))
