"""The bottom layer: goexd's domain model, its errors, and the seams every backend implements.

- models.py: sessions, resources, actions, specs, results, reversibility (what the journal records);
- errors.py: the domain errors (server/errors.py maps them to gRPC statuses, in one place);
- names.py: file names as bytes, and their display form;
- resource.py: ResourceManager and the protocols a manager may also implement (UndoesThreeWay,
  SettlesInDoubt, KeepsCopies, ...), with Checkpoint, Outcome and RollbackReport;
- sandbox.py: Sandbox, SandboxSpec, Limits, ExecResult;
- snapshots.py: WorkspaceSnapshotter, Snapshot, ChangeSet, SetAside, Privileged;
- egress.py: what the egress proxy records and the gate it asks.

Nothing here imports anything of goexd above it (tests/unit/test_layers.py): the engine, the resources
and the backends depend on these words, never the other way.
"""
