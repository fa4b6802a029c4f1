"""goex._rpc covers every RPC of the contract, and both clients expose each one."""

from __future__ import annotations

import inspect

from goex import _aio, _client, _rpc
from goex.v1 import actions_pb2, admin_pb2, secrets_pb2, sessions_pb2


def test_every_rpc_of_the_contract_is_in_the_table() -> None:
    in_table = {m.path for m in vars(_rpc).values() if isinstance(m, _rpc.Method)}
    in_contract = {
        f"/{service.full_name}/{method.name}"
        for module in (sessions_pb2, actions_pb2, secrets_pb2, admin_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert in_table == in_contract


def test_cancel_action_entry() -> None:
    assert _rpc.CANCEL_ACTION.path == "/goex.v1.Actions/CancelAction"
    assert _rpc.CANCEL_ACTION.request is actions_pb2.CancelActionRequest
    assert _rpc.CANCEL_ACTION.response is actions_pb2.CancelActionResponse


def test_both_clients_call_every_rpc() -> None:
    # Each client reaches an RPC through its table entry (`_rpc.NAME`): one left unused is an RPC
    # that client does not offer.
    names = [name for name, m in vars(_rpc).items() if isinstance(m, _rpc.Method)]
    for module in (_client, _aio):
        source = inspect.getsource(module)
        missing = [name for name in names if f"_rpc.{name}" not in source]
        assert missing == [], f"{module.__name__} has no call for {missing}"
