"""The redactor: every form of every value, split across chunks or cut off, never leaves unredacted."""

from __future__ import annotations

import base64
import itertools
import json
import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from goexd.vault.redact import Redactor, forms_of

TOKEN = b"ghp_Zx81Kq/+t0k3n=="


def encodings(value: bytes) -> list[bytes]:
    return [
        value,
        base64.b64encode(value),
        base64.urlsafe_b64encode(value),
        base64.b64encode(value).rstrip(b"="),
        value.hex().encode(),
        value.hex().upper().encode(),
        urllib.parse.quote(value, safe="").encode(),
        urllib.parse.quote_plus(value).encode(),
        json.dumps(value.decode()).encode(),
    ]


def test_every_encoding_is_replaced_by_the_name() -> None:
    r = Redactor([("gh", TOKEN)])
    for enc in encodings(TOKEN):
        out = r(b"before " + enc + b" after")
        assert out.startswith(b"before ") and out.endswith(b" after")
        assert b"[secret:gh]" in out, enc
        assert TOKEN not in out and base64.b64encode(TOKEN)[2:-4] not in out


def test_base64_of_a_longer_string_containing_the_value_is_caught() -> None:
    # A Basic header encodes "user:password": the password sits at some byte alignment inside.
    r = Redactor([("pw", TOKEN)])
    for prefix in (b"", b"u:", b"ab:", b"abc:"):
        encoded = base64.b64encode(prefix + TOKEN + b"!")
        assert b"[secret:pw]" in r(encoded), prefix


def test_longest_match_wins_and_text_outside_is_untouched() -> None:
    r = Redactor([("short", b"abcdef12"), ("long", b"abcdef1234567")])
    assert r(b"x abcdef1234567 y abcdef12 z") == b"x [secret:long] y [secret:short] z"
    assert r(b"nothing here") == b"nothing here"
    assert Redactor()(b"anything") == b"anything"


def test_values_too_short_to_tell_apart_are_not_redacted() -> None:
    # The vault refuses to store them; the redactor must not shred ordinary output either.
    assert Redactor([("tiny", b"ab")])(b"abab") == b"abab"


def test_a_value_cut_off_by_truncation_is_redacted_at_the_end() -> None:
    r = Redactor([("gh", TOKEN)])
    cut = b"output then " + TOKEN[:10]
    assert r(cut) == cut  # without the hint a prefix is left alone
    assert r(cut, truncated=True) == b"output then [secret:gh]..."


def test_live_output_is_held_back_only_where_a_value_could_start() -> None:
    stream = Redactor([("gh", TOKEN)]).stream()
    assert stream.feed(b"progress 10%\n") == b"progress 10%\n"  # nothing could complete a value: sent at once
    assert stream.feed(b"token: " + TOKEN[:5]) == b"token: "  # the tail might be the start of one
    assert stream.feed(TOKEN[5:] + b"\n") == b"[secret:gh]\n"
    assert stream.flush() == b""


def test_text_round_trip() -> None:
    r = Redactor([("gh", TOKEN)])
    assert r.text(f"token={TOKEN.decode()}") == "token=[secret:gh]"
    assert r.found(b"a " + TOKEN.hex().encode()) == ["gh"]


@settings(max_examples=200, deadline=None)
@given(
    secret=st.binary(min_size=6, max_size=40).filter(lambda b: not any(c in b for c in b"\r\n\x00")),
    before=st.binary(max_size=300),
    after=st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=8),
)
def test_stream_redaction_never_lets_a_raw_value_through(
    secret: bytes, before: bytes, after: bytes, cuts: list[int]
) -> None:
    r = Redactor([("s", secret)])
    data = before + secret + after
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    stream = r.stream()
    out = b"".join(stream.feed(data[a:b]) for a, b in itertools.pairwise(bounds)) + stream.flush()
    assert secret not in out
    assert out == r(data)  # chunking changes nothing


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=6, max_size=40), noise=st.binary(max_size=64))
def test_no_form_survives_redaction(secret: bytes, noise: bytes) -> None:
    r = Redactor([("s", secret)])
    for form in forms_of(secret):
        assert form not in r(noise + form + noise)
