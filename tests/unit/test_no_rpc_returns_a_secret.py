"""Walk every response type of the API: no field may be able to carry a secret's value.

Fields that carry action output (which may mention anything) are listed with the reason they
are allowed: they pass the redactor before they are sent. A new field named like a credential,
or any bytes field reachable from a Secrets response, fails this test.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from goex.v1 import actions_pb2, admin_pb2, secrets_pb2, sessions_pb2

CREDENTIAL_NAME = re.compile(r"(^|_)(value|values|password|passphrase|token|tokens|secret_value|client_secret|key)$")

# field full name -> why it may exist in a response
OUTPUT_FIELDS = {
    "goex.v1.SqlRow.values": "query result rows, redacted",
    "goex.v1.ListSessionsResponse.next_page_token": "an opaque page cursor made by goexd",
    "goex.v1.ListActionsResponse.next_page_token": "an opaque page cursor made by goexd",
    "goex.v1.Injection.dsn_password": "an empty marker message: where a value goes, not the value",
}


def reachable_fields(root: Descriptor) -> list[tuple[FieldDescriptor, bool]]:
    """(field, inside a map entry) for every field reachable from `root`."""
    out: list[tuple[FieldDescriptor, bool]] = []
    seen: set[str] = set()
    stack = [(root, False)]
    while stack:
        desc, in_map = stack.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        is_map = desc.GetOptions().map_entry
        for f in desc.fields:
            out.append((f, is_map or in_map))
            if f.message_type is not None:
                stack.append((f.message_type, is_map))
    return out


def response_types() -> dict[str, Descriptor]:
    types: dict[str, Descriptor] = {}
    for module in (sessions_pb2, actions_pb2, secrets_pb2, admin_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                types[f"{service.name}.{method.name}"] = method.output_type
    return types


def test_every_rpc_is_covered() -> None:
    assert len(response_types()) == 35
    assert "Secrets.ListSecrets" in response_types() and "Secrets.AwaitOAuth" in response_types()


def test_no_response_field_is_named_like_a_credential() -> None:
    bad = []
    for rpc, desc in response_types().items():
        for f, in_map in reachable_fields(desc):
            if in_map or f.full_name in OUTPUT_FIELDS:
                continue
            if CREDENTIAL_NAME.search(f.name):
                bad.append(f"{rpc}: {f.full_name}")
    assert bad == []


def test_secrets_responses_have_no_bytes_and_no_maps() -> None:
    for rpc, desc in response_types().items():
        if not rpc.startswith("Secrets."):
            continue
        for f, _ in reachable_fields(desc):
            assert f.type != FieldDescriptor.TYPE_BYTES, f"{rpc}: {f.full_name} could carry a value"
            assert not (f.message_type and f.message_type.GetOptions().map_entry), f"{rpc}: {f.full_name} is a map"


def test_the_walk_would_catch_a_value_field() -> None:
    # PutSecretRequest carries values inwards: the same walk flags it, so the check can fail.
    flagged = [f.name for f, in_map in reachable_fields(secrets_pb2.PutSecretRequest.DESCRIPTOR) if not in_map]
    assert any(CREDENTIAL_NAME.search(n) for n in flagged)
    assert any(
        f.type == FieldDescriptor.TYPE_BYTES for f, _ in reachable_fields(secrets_pb2.PutSecretRequest.DESCRIPTOR)
    )
