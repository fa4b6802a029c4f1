"""Small conversions between protobuf well-known types and Python values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["message_to_dict"]


def message_to_dict(message: Message) -> dict[str, Any]:
    """The JSON form of a response: proto field names, enums by name, bytes as base64.

    Scalar fields at their default (exit_code 0, empty lists) are included so that
    consumers can index them without guessing defaults.
    """
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def timestamp(parent: Message, field: str) -> datetime | None:
    """The timestamp field `field` of `parent` as an aware UTC datetime; None when unset."""
    if not parent.HasField(field):
        return None
    value: Timestamp = getattr(parent, field)
    return value.ToDatetime(tzinfo=UTC)


def seconds(parent: Message, field: str) -> float | None:
    """The duration field `field` of `parent` in seconds; None when unset."""
    if not parent.HasField(field):
        return None
    value: Duration = getattr(parent, field)
    return value.seconds + value.nanos / 1e9


def duration(seconds: float) -> Duration:
    result = Duration()
    result.FromNanoseconds(round(seconds * 1e9))
    return result
