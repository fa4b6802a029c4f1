"""The fs kind: a workspace directory, undone by snapshots (versioned) or by tested inverses (inverse).

A workspace's actions run in the sandbox backend its session named (`sandbox`, `image`: host.sandboxes, checked
at session open and recorded as chosen), else in the daemon's."""

from __future__ import annotations

from pathlib import Path

from goexd.diskspace import is_out_of_space, out_of_space
from goexd.domain.errors import FailedPrecondition, InvalidArgument
from goexd.domain.models import Resource, ResourceKind, ResourceRequest, UndoStrategy
from goexd.domain.sandbox import SandboxChoice
from goexd.resources.fs.access import unwritable
from goexd.resources.fs.inverse import FsInverseResource
from goexd.resources.fs.versioned import FsVersionedResource, validate_workspace
from goexd.resources.registry import Factory, Host, Registry, StrategyTraits
from goexd.sandbox.identity import run_as_for
from goexd.snapshots.git_store import GitWorkspaceStore, store_dir_for


def register(registry: Registry, host: Host) -> None:
    def check(req: ResourceRequest, fld: str, strategy: UndoStrategy) -> Resource:
        path = validate_workspace(req.location, f"{fld}.fs.path", host.own_paths)
        sandbox, image = "", ""
        if host.sandboxes is not None:  # refused now, not at the first action: an unknown backend, a missing image
            host.sandboxes.choose(req.sandbox, req.image, f"{fld}.fs")
            sandbox, image = host.sandboxes.canonical(req.sandbox, req.image)
        elif req.sandbox or req.image:
            raise InvalidArgument(f"{fld}.fs.sandbox", "this goexd runs every workspace in its one sandbox")
        return Resource(req.name or "fs", ResourceKind.FS, str(path), strategy, sandbox=sandbox, image=image)

    def sandbox_of(resource: Resource) -> SandboxChoice:
        if host.sandboxes is None:
            return SandboxChoice(host.sandbox, host.fs_overlays)
        return host.sandboxes.choose(resource.sandbox, resource.image, f"resource {resource.name!r}")

    def opened(manager: type[FsVersionedResource]) -> Factory:
        def factory(resource: Resource) -> FsVersionedResource:
            choice = sandbox_of(resource)  # FailedPrecondition when it cannot run now (the engine gone, say)
            store = open_store(host, resource)
            return manager(
                resource,
                store,
                choice.sandbox,
                masked_paths=[host.cfg.state_dir, host.cfg.socket.parent],
                change_list_limit=host.cfg.fs.change_list_limit,
                overlays_dir=choice.overlays,
            )

        return factory

    registry.add_kind(ResourceKind.FS, "a workspace", UndoStrategy.VERSIONED, check, warnings)
    snapshots = StrategyTraits(copies_into_state_dir=True)
    registry.add_strategy(ResourceKind.FS, UndoStrategy.VERSIONED, opened(FsVersionedResource), snapshots)
    registry.add_strategy(ResourceKind.FS, UndoStrategy.INVERSE, opened(FsInverseResource), snapshots)


def warnings(resource: Resource) -> list[str]:
    """Workspace entries its actions cannot write (another uid's files), said at session open."""
    root = Path(resource.uri)
    who = run_as_for(root)
    said = unwritable(root, who).warning(root, who)
    return [] if said is None else [said]


def open_store(host: Host, resource: Resource) -> GitWorkspaceStore:
    workspace = Path(resource.uri)
    if not workspace.is_dir():
        raise FailedPrecondition(f"workspace {workspace} no longer exists")
    store = GitWorkspaceStore(
        store_dir_for(host.cfg.snapshots_dir, workspace),
        workspace,
        watch=host.cfg.fs.change_detection == "inotify",
    )
    # Baseline; later captures are incremental. What goexd may not read and does not own fails the
    # first action's checkpoint instead (naming it), and never a restart's recovery.
    try:
        store.capture(lenient=True)
    except Exception as exc:
        store.close()
        if is_out_of_space(exc):
            host.space.release()
            raise out_of_space(
                f"taking the first snapshot of {workspace}", [host.cfg.snapshots_dir, workspace]
            ) from exc
        raise
    return store
