"""`make bench`, confinement part (issue 13): what each sandbox mechanism costs, side by side in one run.

Every variant runs once per round, in a fresh random order per round, so that drift of this shared
2-core machine (other agents run on it) hits all of them alike; costs are medians of the per-round
differences between two variants (paired), besides each variant's own p50 / p90.

1. bwrap spawn of `true` over a 1-file workspace, in this process, through the sandbox code:
   (a) the plan before the allow list: commit f8f630f's `BwrapSandbox` itself (its bwrap.py and
       egress_forwarder.py taken with `git show` into a temp dir and imported; it probes the host
       as it did: live Unix sockets, secrets, HOME, `/` rebuilt entry by entry on a tmpfs because
       /workspace does not exist on the host), uid 0;
   (b) the allow-list plan on bwrap's empty root, uid 0, without the seccomp filter and without
       the /etc masks of uid 0 (BwrapSandbox's own steps, `render_plan` with `Fds()`);
   (c) (b) + the seccomp filters (`--add-seccomp-fd`, as `_open_fds` opens them);
   (d) (c) + the uid switch: a workspace owned by the unprivileged user goex-ws, bwrap started as
       that user (Popen user=/group=/extra_groups=[], which rules out vfork): `BwrapSandbox.run`;
   (e) (c) + /etc's unreadable entries masked for a command that keeps uid 0 (root-owned
       workspace): `BwrapSandbox.run`.
   (d) and (e) are the code that ships; (b) and (c) switch parts of it off.
2. network=proxy: the same runs behind the egress forwarder (`python3 -I -S -c SOURCE`), old
   (f8f630f: the proxy's socket bind-mounted, posix_spawn) vs new (O_PATH descriptor, ctypes,
   non-dumpable, fork + a second filter before exec), each against its own plan without a
   proxy. Nothing connects, so a bound Unix socket stands in for the proxy's route.
3. End to end through real goexd processes over gRPC, 1k-file workspaces (bench/run.py's action
   and undo): goexd as root over a root-owned workspace and over one owned by goex-ws (uid
   switch), and goexd at f8f630f (extracted with `git archive`, run with PYTHONPATH) over a
   root-owned one, with the daemon's own timings (prepare = snapshot, run = sandbox, capture =
   change set) beside the client's round trip. The uid switch goes through util-linux `setpriv` in
   front of bwrap (so that Popen keeps vfork); the "Popen()" column shows what starting bwrap costs.

Needs root (a test user, cgroups, the uid switch). Prints Markdown tables and writes them to
bench/confine_results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import inspect
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from measure import ms_since, pct, progress, publish, table
from run import ACTION, make_workspace

from goex.v1 import actions_pb2 as apb
from goex.v1 import actions_pb2_grpc, sessions_pb2_grpc
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.domain.sandbox import ExecResult, Network, ProxyEndpoint, SandboxSpec, Termination
from goexd.launcher import DaemonProcess
from goexd.sandbox.bwrap import BwrapSandbox, _Execution, _open_fds
from goexd.sandbox.bwrap_plan import Fds, render_plan
from goexd.sandbox.identity import RunAs
from goexd.sandbox.limits import detect_enforcer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.users: the suite's way of making its test user
from tests.users import ensure_system_user  # noqa: E402

OLD = "f8f630f"  # the last commit before the allow-list plan (5b7b391)
WS_USER = "goex-ws"  # owns the uid-switch workspace, as in the security suite
ROOT = RunAs(0, 0)
NOT_ROOT = RunAs(65534, 65534)  # probes as a non-root command: no /etc masks
JOURNAL = 'journal_sync = "full"\n'  # as bench/run.py


def ms_of(d: Any) -> float:
    """A google.protobuf.Duration in milliseconds."""
    return float(d.ToNanoseconds()) / 1e6


# --- the old code (f8f630f) -------------------------------------------------------------------


def git_show(path: str) -> str | None:
    r = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD}:{path}"], capture_output=True, text=True, check=False)
    return r.stdout if r.returncode == 0 else None


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def load_old_sandbox(tmp: Path) -> ModuleType | None:
    """f8f630f's bwrap.py, wired to f8f630f's forwarder (base.py is unchanged since; limits.py only
    gained a launcher() that the old code does not call and that cgroup enforcers leave empty)."""
    fwd = git_show("daemon/goexd/sandbox/egress_forwarder.py")
    bwrap = git_show("daemon/goexd/sandbox/bwrap.py")
    if fwd is None or bwrap is None:
        return None
    wiring = "from goexd.sandbox import egress_forwarder as forwarder"
    assert wiring in bwrap, "f8f630f's bwrap.py no longer imports its forwarder the way this bench expects"
    (tmp / "old_forwarder.py").write_text(fwd)
    (tmp / "old_bwrap.py").write_text(bwrap.replace(wiring, "import old_forwarder as forwarder"))
    _load("old_forwarder", tmp / "old_forwarder.py")
    return _load("old_bwrap", tmp / "old_bwrap.py")


def searchable_without_caps(path: str) -> bool:
    """Whether uid 0 without capabilities (bwrap's) can reach `path`: each ancestor root's or o+x."""
    parent = os.path.dirname(path)
    while True:
        st = os.stat(parent)
        if not (st.st_mode & 0o001 or (st.st_uid == 0 and st.st_mode & 0o100)):
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def bindable_old_sandbox(old_mod: ModuleType, enforcer: Any, seen: list[tuple[int, int]]) -> Any:
    """f8f630f's sandbox, minus the sockets its bwrap cannot bind /dev/null over.

    With them it fails outright here (`Can't create file at ...: Permission denied`: the security
    suite's goexd runs as goex-sec, its socket in a 0700 dir), the fragility issue 13 describes.
    The masks it can make are all kept; `seen` collects (masked, left out) per probe.
    """

    class OldSandbox(old_mod.BwrapSandbox):  # type: ignore[name-defined,misc]
        def probe(self, spec: SandboxSpec) -> Any:
            host = super().probe(spec)
            kept = tuple(p for p in host.unix_sockets if searchable_without_caps(p))
            seen.append((len(kept), len(host.unix_sockets) - len(kept)))
            return dataclasses.replace(host, unix_sockets=kept)

    return OldSandbox(enforcer)  # as f8f630f's main.py made it


# Every goexd of section 3 starts through a shim that times the Popen() that starts bwrap (one line
# per spawn to $GOEX_BENCH_POPEN_LOG), wrapping `POPEN`, which the shim's middle part defines.
SHIM_HEAD = """# goexd for bench/confine_bench.py
import os
import runpy
import subprocess
import time
import types

from goexd.sandbox import bwrap

_log = open(os.environ["GOEX_BENCH_POPEN_LOG"], "a", buffering=1)
POPEN = subprocess.Popen
"""
SHIM_TAIL = """

def timed_popen(argv, **kw):
    t0 = time.perf_counter()
    proc = POPEN(argv, **kw)
    _log.write(f"{(time.perf_counter() - t0) * 1000:.3f}\\n")
    return proc


bwrap.subprocess = types.SimpleNamespace(**{**vars(subprocess), "Popen": timed_popen})
runpy.run_module("goexd.main", run_name="__main__")
"""
# f8f630f's goexd, with the Unix sockets its bwrap cannot bind over left out (see bindable_old_sandbox).
OLD_SHIM = f"""
{inspect.getsource(searchable_without_caps)}

_all = bwrap._unix_sockets
bwrap._unix_sockets = lambda realpath: [p for p in _all(realpath) if searchable_without_caps(p)]
"""


def extract_old_daemon(dest: Path) -> Path | None:
    """f8f630f's daemon/ (git archive), for PYTHONPATH; None when this clone lacks the commit."""
    r = subprocess.run(["git", "-C", str(REPO), "archive", OLD, "daemon"], capture_output=True, check=False)
    if r.returncode != 0:
        return None
    dest.mkdir()
    subprocess.run(["tar", "-x", "-C", str(dest)], input=r.stdout, check=True)
    return dest / "daemon"


class ShimDaemon(DaemonProcess):
    """goexd started through a shim (SHIM_HEAD + `middle` + SHIM_TAIL), with `source` (a daemon/
    tree) first on PYTHONPATH; `popen_ms()` reads the Popen() timings it logged."""

    def __init__(self, root: Path, middle: str = "", source: Path | None = None) -> None:
        shim_dir = root.parent / f"{root.name}-shim"
        shim_dir.mkdir()
        (shim_dir / "goexd_shim.py").write_text(SHIM_HEAD + middle + SHIM_TAIL)
        self.popen_log = shim_dir / "popen.log"
        path = [str(shim_dir), *([str(source)] if source is not None else [])]
        env = {"PYTHONPATH": os.pathsep.join(path), "GOEX_BENCH_POPEN_LOG": str(self.popen_log)}
        super().__init__(root, env=env, config_toml=JOURNAL)

    @property
    def argv(self) -> list[str]:
        return [sys.executable, "-m", "goexd_shim", *super().argv[3:]]

    def popen_ms(self, last: int) -> list[float]:
        return [float(x) for x in self.popen_log.read_text().split()[-last:]]


# --- interleaved rounds ---------------------------------------------------------------------


@dataclass
class Variant:
    key: str
    label: str
    run: Callable[[], Any]  # one measured call; returns what check() looks at
    check: Callable[[Any], None] = lambda _: None
    ms: list[float] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)


def interleave(variants: Sequence[Variant], rounds: int, warmup: int, what: str) -> None:
    """Each variant once per round, in a fresh random order; the first `warmup` rounds not kept."""
    rng = random.Random(13)
    order = list(variants)
    for i in range(warmup + rounds):
        rng.shuffle(order)
        for v in order:
            t0 = time.perf_counter()
            out = v.run()
            elapsed = ms_since(t0)
            v.check(out)
            if i >= warmup:
                v.ms.append(elapsed)
                v.results.append(out)
        if (i + 1) % 50 == 0:
            progress(f"{what}: round {i + 1 - warmup}/{rounds}")


def paired(a: Variant, b: Variant, q: float = 0.5) -> float:
    """The q-quantile of a - b over the rounds (both ran in each)."""
    return pct([x - y for x, y in zip(a.ms, b.ms, strict=True)], q)


def cells(v: Variant) -> list[str]:
    return [f"{pct(v.ms, 0.5):.1f}", f"{pct(v.ms, 0.9):.1f}"]


def delta(a: Variant, b: Variant) -> str:
    return f"{paired(a, b):+.1f} ({b.key})"


# --- 1 and 2: bwrap spawns --------------------------------------------------------------------


def exited_zero(r: ExecResult) -> None:
    if r.termination is not Termination.EXITED or r.exit_code != 0:
        raise RuntimeError(f"sandbox run failed: {r.termination} {r.detail} {r.stderr[-500:]!r}")


def run_switchable(sb: BwrapSandbox, spec: SandboxSpec, run_as: RunAs, masks: bool, filtered: bool) -> ExecResult:
    """`BwrapSandbox._run_once`'s steps for Network.NONE, with the uid-0 masks and the filters switchable."""
    started = time.monotonic()
    host = sb.probe(spec, run_as if masks else NOT_ROOT)
    assert sb.bwrap_path is not None
    limits = sb.enforcer.start(spec.limits)
    try:
        with _open_fds(spec, run_as) if filtered else nullcontext(Fds()) as fds:
            plan = render_plan(spec, host, fds)
            return _Execution(sb.bwrap_path, plan, spec, run_as, fds, limits, None, None, started).execute("")
    finally:
        limits.close()


@dataclass
class Setup:
    """Workspaces, specs and sandboxes shared by the spawn variants."""

    root_spec: SandboxSpec
    user_spec: SandboxSpec
    proxy: ProxyEndpoint
    new: BwrapSandbox
    old: Any  # old_bwrap.BwrapSandbox, or None
    old_sockets: list[tuple[int, int]]  # per old probe: (sockets masked, left out)


def proxied(spec: SandboxSpec, proxy: ProxyEndpoint) -> SandboxSpec:
    return SandboxSpec(
        argv=spec.argv,
        workspace=spec.workspace,
        readonly_subpaths=spec.readonly_subpaths,
        masked_paths=spec.masked_paths,
        network=Network.PROXY,
        proxy=proxy,
    )


@contextmanager
def spawn_setup(root: Path, user_uid: int, user_gid: int, old_mod: ModuleType | None) -> Iterator[Setup]:
    own = [root / "state", root / "run"]  # what the engine masks: the daemon's state and socket dirs
    for p in own:
        p.mkdir(mode=0o700)
    spaces = {}
    for name, (uid, gid) in {"root": (0, 0), "user": (user_uid, user_gid)}.items():
        ws = root / f"ws-{name}"
        ws.mkdir()
        (ws / "README").write_text("one file\n")
        for p in (ws, ws / "README"):
            os.chown(p, uid, gid)
        spaces[name] = SandboxSpec(argv=["true"], workspace=ws, readonly_subpaths=(".git",), masked_paths=own)
    (root / "egress").mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "egress" / "route.sock"))  # bound, never accepted from: nothing connects
    (root / "egress" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")
    enforcer = detect_enforcer()
    seen: list[tuple[int, int]] = []
    try:
        yield Setup(
            root_spec=spaces["root"],
            user_spec=spaces["user"],
            proxy=ProxyEndpoint(root / "egress" / "route.sock", root / "egress" / "ca.pem"),
            new=BwrapSandbox(enforcer, always_masked=own),
            old=bindable_old_sandbox(old_mod, enforcer, seen) if old_mod is not None else None,
            old_sockets=seen,
        )
    finally:
        sock.close()


def spawn_variants(s: Setup) -> tuple[list[Variant], list[Variant]]:
    """(section 1's, section 2's)."""
    new, root_spec, user_spec = s.new, s.root_spec, s.user_spec
    ladder = [
        Variant("b", "allow list on an empty root, uid 0, no filter, no /etc masks",
                lambda: run_switchable(new, root_spec, ROOT, masks=False, filtered=False)),
        Variant("c", "(b) + seccomp filters",
                lambda: run_switchable(new, root_spec, ROOT, masks=False, filtered=True)),
        Variant("d", f"(c) + uid switch to {WS_USER}, its workspace: shipping `BwrapSandbox.run`",
                lambda: new.run(user_spec)),
        Variant("e", "(c) + /etc masks for uid 0, root's workspace: shipping `BwrapSandbox.run`",
                lambda: new.run(root_spec)),
    ]  # fmt: skip
    proxy = [
        Variant("e+fwd", "(e) behind the forwarder, uid 0", lambda: new.run(proxied(root_spec, s.proxy))),
        Variant("d+fwd", "(d) behind the forwarder, uid switch", lambda: new.run(proxied(user_spec, s.proxy))),
    ]
    if s.old is not None:
        old = s.old
        ladder.insert(0, Variant("a", f"before: `--ro-bind /` + socket and secret masks ({OLD}), uid 0",
                                 lambda: old.run(root_spec)))  # fmt: skip
        proxy.insert(0, Variant("a+fwd", f"(a) behind {OLD}'s forwarder", lambda: old.run(proxied(root_spec, s.proxy))))
    for v in [*ladder, *proxy]:
        v.check = exited_zero
    return ladder, proxy


def plan_sizes(s: Setup) -> dict[str, tuple[int, float]]:
    """Per variant: bwrap mount operations, and the daemon-side probe + render time (ms, p50 of 200)."""
    new = s.new
    fns: dict[str, Callable[[], Any]] = {
        "b": lambda: render_plan(s.root_spec, new.probe(s.root_spec, NOT_ROOT), Fds()),
        "d": lambda: new.plan(s.user_spec),
        "e": lambda: new.plan(s.root_spec),
    }
    if s.old is not None:
        fns["a"] = lambda: s.old.plan(s.root_spec)
    variants = [Variant(k, k, fn) for k, fn in fns.items()]
    interleave(variants, 200, 5, "plans")
    sizes = {v.key: (len(v.results[0].mounts), pct(v.ms, 0.5)) for v in variants}
    return {**sizes, "c": sizes["b"]}  # the filters add descriptors, not mounts


def section_spawn(s: Setup, rounds: int) -> str:
    sizes = plan_sizes(s)
    ladder, proxy = spawn_variants(s)
    interleave([*ladder, *proxy], rounds, 5, "bwrap spawns")
    by = {v.key: v for v in [*ladder, *proxy]}
    steps = {"c": "b", "d": "c", "e": "c", "b": "a"}
    rows = []
    for v in ladder:
        mounts, plan_ms = sizes[v.key]
        step = delta(v, by[steps[v.key]]) if steps.get(v.key) in by else "-"
        vs_old = delta(v, by["a"]) if "a" in by and v.key != "a" else "-"
        rows.append([f"({v.key}) {v.label}", str(mounts), f"{plan_ms:.2f}", *cells(v), step, vs_old])
    spawn = table(
        ["variant", "mount ops", "probe + plan (ms)", "p50 (ms)", "p90 (ms)", "cost: paired Δ p50 vs", "vs (a)"],
        "lrrrrrr",
        rows,
    )
    bases = {"a+fwd": "a", "e+fwd": "e", "d+fwd": "d"}
    fwd_rows = [[v.label, *cells(v), delta(v, by[bases[v.key]])] for v in proxy]
    if "a+fwd" in by:
        new_cost = [f - n for f, n in zip(by["e+fwd"].ms, by["e"].ms, strict=True)]
        old_cost = [f - n for f, n in zip(by["a+fwd"].ms, by["a"].ms, strict=True)]
        more = pct([x - y for x, y in zip(new_cost, old_cost, strict=True)], 0.5)
        fwd_rows.append(["new forwarder's cost - old's, uid 0 (per round: (e+fwd - e) - (a+fwd - a))", "", "",
                         f"{more:+.1f}"])  # fmt: skip
    forwarder = table(["network=proxy", "p50 (ms)", "p90 (ms)", "forwarder: paired Δ p50 vs"], "lrrr", fwd_rows)
    note = ""
    if s.old_sockets:
        masked, left = zip(*s.old_sockets, strict=True)
        note = (
            f" (a) masked {min(masked)}-{max(masked)} live Unix sockets per run and had to leave out "
            f"{min(left)}-{max(left)} it could not bind over (another user's socket in a 0700 dir: with "
            "them every run failed, the issue's `Permission denied`)."
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"## 1. bwrap spawn of `true` ({rounds} interleaved rounds, {s.new.enforcer.name} limits)\n\n"
        "Each run: probe the host, plan, a run cgroup, bwrap, `true`, exit status, in the bench process "
        f"(max RSS {rss:.0f} MB; goexd's is about 110 MB, and what fork costs grows with it: see 3). Mount "
        "ops: bwrap mount operations in the plan. Probe + plan: the daemon-side Python before the spawn "
        f"(p50). Δ: median over rounds of (this - that) in the same round.{note}\n\n"
        f"{spawn}\n\n"
        f"## 2. network=proxy: the egress forwarder's start ({rounds} rounds, same run as 1)\n\n"
        "`python3 -I -S -c SOURCE ... -- true` in front of the command; Δ against the same plan without "
        "a proxy.\n\n"
        f"{forwarder}\n"
    )


# --- 3: end to end --------------------------------------------------------------------------


@dataclass
class Session:
    key: str
    label: str
    actions: actions_pb2_grpc.ActionsStub
    sessions: sessions_pb2_grpc.SessionsStub
    session_id: str

    def one(self) -> tuple[float, float, pb.Action]:
        """bench/run.py's round: the action, then its undo; (action ms, undo ms, the action)."""
        req = apb.SubmitActionRequest(
            session_id=self.session_id, spec=pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", ACTION]))
        )
        t0 = time.perf_counter()
        action = self.actions.SubmitAction(req, timeout=120).action
        t1 = time.perf_counter()
        if action.state != pb.ACTION_STATE_EXECUTED:
            raise RuntimeError(f"{self.key}: action not executed: {action.error}")
        undone = self.actions.UndoAction(apb.UndoActionRequest(session_id=self.session_id), timeout=120).undone
        t2 = time.perf_counter()
        if undone[0].state != pb.ACTION_STATE_UNDONE:
            raise RuntimeError(f"{self.key}: undo failed")
        return (t1 - t0) * 1000, (t2 - t1) * 1000, action

    def close(self) -> None:
        req = spb.CloseSessionRequest(session_id=self.session_id, mode=spb.CLOSE_MODE_COMMIT_ALL)
        self.sessions.CloseSession(req, timeout=60)


def open_session(key: str, label: str, d: DaemonProcess, ws: Path) -> Session:
    ch = d.connect()
    sessions = sessions_pb2_grpc.SessionsStub(ch)
    resources = [pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))]
    sid = sessions.CreateSession(spb.CreateSessionRequest(resources=resources), timeout=600).session.id
    return Session(key, label, actions_pb2_grpc.ActionsStub(ch), sessions, sid)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


E2E_REFS = {"root": ["old"], "user": ["old", "root"], "old": []}


def section_e2e(root: Path, user: RunAs, old_src: Path | None, rounds: int) -> str:
    # One daemon per case, so that each one's Popen() timings are its own. key: (label, shim, owner)
    plans = {
        "root": ("goexd as root, root-owned workspace (uid 0 + /etc masks)", "", ROOT),
        "user": (f"goexd as root, {WS_USER}'s workspace (uid switch)", "", user),
        "old": (f"goexd at {OLD} as root, root-owned workspace", OLD_SHIM, ROOT),
    }
    if old_src is None:
        del plans["old"]
    daemons = {k: ShimDaemon(root / k, shim, old_src if k == "old" else None) for k, (_, shim, _) in plans.items()}
    spaces = {}
    for name, (_, _, who) in plans.items():
        (root / f"ws-{name}").mkdir(mode=0o755)
        ws = make_workspace(root / f"ws-{name}", 1000)
        if who != ROOT:
            for dirpath, _, files in os.walk(ws):
                for p in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                    os.chown(p, who.uid, who.gid)
        spaces[name] = ws
    try:
        for d in daemons.values():
            d.root.mkdir()
            d.start()
        sessions = [open_session(k, label, daemons[k], spaces[k]) for k, (label, _, _) in plans.items()]
        variants = [Variant(s.key, s.label, s.one) for s in sessions]
        try:
            interleave(variants, rounds, 3, "end to end")
        except (grpc.RpcError, RuntimeError):
            for k, d in daemons.items():  # their dirs go with the temp dir: show why here
                progress(f"--- goexd {k}, log tail:\n{d.log()[-4000:]}")
            raise
        rss = {k: rss_mb(d.proc.pid) for k, d in daemons.items() if d.proc is not None}
        popen = {k: d.popen_ms(rounds) for k, d in daemons.items()}
        for s in sessions:
            s.close()
    finally:
        for d in daemons.values():
            d.stop()
    # Variant.ms holds action + undo; the columns are about the action (and the undo apart).
    act = {v.key: Variant(v.key, v.label, v.run, ms=[r[0] for r in v.results]) for v in variants}
    rows = []
    for v in variants:
        actions = [r[2] for r in v.results]
        undo = [r[1] for r in v.results]
        timing = [pct([ms_of(getattr(a.timings, f)) for a in actions], 0.5) for f in ("prepare", "run", "capture")]
        rest = pct([r[0] - ms_of(r[2].timings.total) for r in v.results], 0.5)
        refs = [r for r in E2E_REFS[v.key] if r in act]
        vs = ", ".join(delta(act[v.key], act[r]) for r in refs) or "-"
        rows.append(
            [
                v.label,
                *cells(act[v.key]),
                *(f"{t:.1f}" for t in timing),
                f"{pct(popen[v.key], 0.5):.1f} / {pct(popen[v.key], 0.9):.1f}",
                f"{rest:.1f}",
                f"{pct(undo, 0.5):.1f} / {pct(undo, 0.9):.1f}",
                vs,
            ]
        )
    hdr = [
        "1k files",
        "action p50 (ms)",
        "action p90 (ms)",
        "prepare p50",
        "run p50",
        "capture p50",
        "of run: bwrap's Popen() p50 / p90",
        "action - daemon total, p50",
        "undo p50 / p90 (ms)",
        "action: paired Δ p50 vs",
    ]
    rss_note = ", ".join(f"{k} {mb:.0f} MB" for k, mb in rss.items())
    return (
        f"## 3. End to end: the 1k-file FS action through goexd over gRPC ({rounds} interleaved rounds)\n\n"
        f"Action: `sh -c '{ACTION}'`, then its undo; journal_sync=full. Target: action p50 ≤ 20 ms "
        "(18.4 ms before issue 13). prepare / run / capture: the daemon's own Timings (snapshot, sandbox, "
        "change set); Popen(): the call that starts bwrap, inside run (fork + exec, or vfork + exec), "
        f"timed by the daemon's shim. One goexd per row; RSS at the end: {rss_note}.\n\n"
        f"{table(hdr, 'lrrrrrrrrr', rows)}\n"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=300, help="interleaved rounds of the bwrap spawns (1, 2)")
    p.add_argument("--rounds-e2e", type=int, default=150, help="interleaved rounds end to end (3)")
    p.add_argument("--skip-spawn", action="store_true", help="only section 3")
    p.add_argument("--skip-e2e", action="store_true", help="only sections 1 and 2")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("confine_results.md"))
    args = p.parse_args()
    if os.geteuid() != 0:
        progress("confine_bench: skipped, it needs root (a test user, run cgroups, the uid switch)")
        return 0
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    pw = ensure_system_user(WS_USER)
    user = RunAs(pw.pw_uid, pw.pw_gid)
    parts = []
    with tempfile.TemporaryDirectory(prefix="goex-cbench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the uid-switch workspace must be reachable by its owner
        old_mod = load_old_sandbox(root)
        missing = "" if old_mod is not None else f"\n(commit {OLD} is not in this clone: no 'before' rows.)\n"
        if not args.skip_spawn:
            (root / "spawn").mkdir(mode=0o755)
            with spawn_setup(root / "spawn", user.uid, user.gid, old_mod) as s:
                parts.append(section_spawn(s, args.rounds))
        if not args.skip_e2e:
            (root / "e2e").mkdir(mode=0o755)
            old_src = extract_old_daemon(root / "old-src")
            parts.append(section_e2e(root / "e2e", user, old_src, args.rounds_e2e))
        header = (
            f"# Confinement cost (bench/confine_bench.py)\n\nOne run on this {os.cpu_count()}-core machine, "
            f"shared with other jobs (1-minute load average {load_before:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end).\n{missing}\n"
        )
    publish(header + "\n".join(parts), args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
