"""`make bench`, container part (issue 17): the same small action in five ways, side by side in one run.

The action: `sh -c 'echo hi > out.txt; cat out.txt'` over a 1-file root-owned workspace (as a root goexd runs it).

1. bwrap: `BwrapSandbox.run` (the default backend; its cgroup limits and seccomp filters).
2. warm pool: `ContainerSandbox.run` with a warm container waiting (pool of 2, slots: the workspace mounted on
   the leased container's slot; the runner over the attached stdio). Before each timed run the pool is given
   the time to refill (untimed), so every timed run is a hit; the run's own removal is in the background.
3. cold, our way: `ContainerSandbox.run` with no pool (`pool_size = 0`): create, attach, start, the runner
   ready, the action; the container made with the workspace bound (no slot).
4. cold, the prototype's way: `docker.from_env().containers.run(image, cmd, volumes=..., remove=True)`
   per action (create, start, wait, logs, remove: the GoEx prototype's path), through the same SDK.
5. engine exec: `exec_create` + `exec_start` + `exec_inspect` into a container kept running, the engine's own
   way into a warm container (no runner).

Each round runs every variant once, in a fresh random order (this 2-core machine is shared: drift hits all
alike). Reported: p50 / p90 of each, and the ratios of medians the issue sets targets on (warm pool >= 5x
faster than a cold run per action; within 3x of bwrap). Then the pool's refill throughput: containers a pool
of 8 makes from empty, per second (2 fill workers).

Needs root and podman + runc (make install): it starts its own Podman API service (tests/services/
container_engine.py) and builds goexd's image offline if the engine lacks it. Writes bench/container_results.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
from measure import ms_since, pct, progress, publish, table

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/container_bench.py` puts bench/, not the repo root, on sys.path
    sys.path.insert(0, str(REPO))

from goexd.config import ContainerConfig  # noqa: E402
from goexd.domain.sandbox import Limits, SandboxSpec, Termination  # noqa: E402
from goexd.sandbox import container_engine, container_image  # noqa: E402
from goexd.sandbox.bwrap import BwrapSandbox  # noqa: E402
from goexd.sandbox.container import ContainerSandbox  # noqa: E402
from goexd.sandbox.container_slots import Slots  # noqa: E402
from goexd.sandbox.identity import run_as_for  # noqa: E402
from tests.services.container_engine import CONTAINERS_CONF, start_service  # noqa: E402
from tests.services.http_service import stop_process  # noqa: E402

SCRIPT = "echo hi > out.txt; cat out.txt"
OUT = Path(__file__).with_name("container_results.md")
WARM, PROTOTYPE, EXEC = "warm pool", "cold, containers.run per action", "engine exec into a running container"


def spec(ws: Path) -> SandboxSpec:
    return SandboxSpec(argv=["sh", "-c", SCRIPT], workspace=ws, limits=Limits(timeout_s=60))


def checked(run: Callable[[], bytes]) -> Callable[[], None]:
    def go() -> None:
        out = run()
        assert out == b"hi\n", out

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--refill", type=int, default=8, help="containers the refill measurement makes")
    args = parser.parse_args()
    started = time.perf_counter()
    if os.geteuid() != 0:
        sys.exit("container_bench.py needs root (slots are mounts; the workspace is root's)")
    scratch = Path(tempfile.mkdtemp(prefix="goex-ctr-bench-", dir="/var/tmp"))
    scratch.chmod(0o755)
    conf = scratch / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    service, sock = start_service(scratch, conf)
    endpoint = f"unix://{sock}"
    slots = Slots.open(f"bench-{os.getpid()}")
    sandboxes: list[ContainerSandbox] = []
    try:
        api = container_engine.connect(endpoint)
        image = container_image.ensure_image(api)
        progress(f"engine {endpoint}, image {image}")
        ws = scratch / "ws"
        ws.mkdir()
        (ws / "README").write_text("a workspace\n")

        bwrap = BwrapSandbox()
        warm = ContainerSandbox(ContainerConfig(endpoint, image, pool_size=2), "bench", "warm", slots=slots)
        cold = ContainerSandbox(ContainerConfig(endpoint, image, pool_size=0), "bench", "cold")
        sandboxes += [warm, cold]
        sdk = docker.DockerClient(base_url=endpoint, version=container_engine.API_VERSION)
        keeper = sdk.containers.run(image, ["sleep", "infinity"], detach=True, network_mode="none", labels={})

        def run_in(sb: ContainerSandbox | BwrapSandbox) -> bytes:
            r = sb.run(spec(ws))
            assert r.termination is Termination.EXITED, r
            return r.stdout

        def prototype() -> bytes:
            out = sdk.containers.run(
                image,
                ["sh", "-c", f"cd /workspace && {SCRIPT}"],
                volumes={str(ws): {"bind": "/workspace", "mode": "rw"}},
                network_mode="none",
                remove=True,
            )
            return bytes(out)

        def exec_into() -> bytes:
            ex = api.exec_create(keeper.id, ["sh", "-c", f"cd /tmp && {SCRIPT}"])
            out = api.exec_start(ex["Id"])
            assert api.exec_inspect(ex["Id"])["ExitCode"] == 0
            return bytes(out)

        shape = warm._shape(image, spec(ws), run_as_for(ws))  # what its runs lease

        def warmed() -> None:
            warm.pool.warm_up(shape)
            deadline = time.monotonic() + 60
            while warm.pool.stats().warm < 1 and time.monotonic() < deadline:
                time.sleep(0.01)

        variants: dict[str, tuple[Callable[[], None], Callable[[], None] | None]] = {
            "bwrap": (checked(lambda: run_in(bwrap)), None),
            WARM: (checked(lambda: run_in(warm)), warmed),
            "cold, ours (no pool)": (checked(lambda: run_in(cold)), None),
            PROTOTYPE: (checked(prototype), None),
            EXEC: (checked(exec_into), None),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for go, before in variants.values():  # once each, untimed: caches, the first container
            if before is not None:
                before()
            go()
        for i in range(args.rounds):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                go, before = variants[name]
                if before is not None:
                    before()
                t0 = time.perf_counter()
                go()
                times[name].append(ms_since(t0))
            if (i + 1) % 10 == 0:
                progress(f"round {i + 1}/{args.rounds}")
        stats = warm.pool.stats()
        hits = stats.leases - stats.misses
        keeper.remove(force=True)

        refill = ContainerSandbox(ContainerConfig(endpoint, image, pool_size=args.refill), "bench", "fill", slots=slots)
        sandboxes.append(refill)
        t0 = time.perf_counter()
        refill.pool.warm_up(shape)
        while refill.pool.stats().warm < args.refill:
            time.sleep(0.005)
        fill_s = ms_since(t0) / 1000

        p50 = {name: pct(xs, 0.5) for name, xs in times.items()}
        rows = [[name, f"{p50[name]:.1f}", f"{pct(xs, 0.9):.1f}"] for name, xs in times.items()]
        load = os.getloadavg()[0]
        text = "\n".join(
            [
                "# Containers: the same small action five ways (bench/container_bench.py)",
                "",
                f"`sh -c '{SCRIPT}'` over a 1-file root-owned workspace; {args.rounds} rounds, each variant once a "
                f"round in random order; Podman {docker_version(api)} (runc) through its Docker-compatible API; "
                f"load average {load:.1f} at the end (2 cores, shared).",
                "",
                table(["variant", "p50 ms", "p90 ms"], "lrr", rows),
                "",
                f"- warm pool vs cold `containers.run` per action: **{p50[PROTOTYPE] / p50[WARM]:.1f}x** faster "
                "(target >= 5x)",
                f"- warm pool vs bwrap: **{p50[WARM] / p50['bwrap']:.1f}x** bwrap's time (target <= 3x)",
                f"- warm pool vs engine exec: {p50[EXEC] / p50[WARM]:.1f}x faster",
                f"- warm-pool leases that found a warm container: {hits} of {stats.leases}",
                f"- refill: a pool of {args.refill} made from empty in {fill_s:.2f} s: "
                f"**{args.refill / fill_s:.1f} containers/s** (2 fill workers)",
                "",
            ]
        )
        publish(text, OUT, started)
    finally:
        for sb in sandboxes:
            sb.close()
        slots.close()
        stop_process(service)
        shutil.rmtree(scratch, ignore_errors=True)


def docker_version(api: object) -> str:
    info = api.version()  # type: ignore[attr-defined]
    return str(info.get("Version", "?"))


if __name__ == "__main__":
    main()
