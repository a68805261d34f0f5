"""`unstorable` says exactly when the log would not give a value back as it was given:
msgpack refuses it, its JSON (every view of the log) reads back as something else, or a
whole number is outside the signed 64 bits expressions compute with."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from engine.rules.values import MAX_INT, unstorable

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-MAX_INT - 2, -MAX_INT + 2)
    | st.integers(MAX_INT - 2, MAX_INT + 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


def signed_64(value: Any) -> bool:
    if isinstance(value, dict):
        return all(signed_64(v) for v in value.values())
    if isinstance(value, list):
        return all(signed_64(v) for v in value)
    return not isinstance(value, int) or isinstance(value, bool) or abs(value) <= MAX_INT


def kept(value: Any) -> bool:
    """The value comes back equal from the log's msgpack and from its JSON."""
    try:
        packed = msgspec.msgpack.decode(msgspec.msgpack.encode(value))
    except OverflowError:
        return False
    as_json = msgspec.json.decode(msgspec.json.encode(value))
    return bool(packed == value and as_json == value)


@given(VALUES)
def test_a_value_is_storable_exactly_when_the_log_gives_it_back(value: Any) -> None:
    assert (unstorable(value) is None) == (kept(value) and signed_64(value))


def test_the_reason_says_what_to_do() -> None:
    assert unstorable({"a": [2**63]}) == (
        "holds a whole number too large to store",
        f"whole numbers lie within ±{MAX_INT}; pass it as a string",
    )
    message, hint = unstorable([1.0, float("inf")]) or ("", "")
    assert "inf" in message and "finite" in hint


def test_a_deeply_nested_value_is_walked_without_recursion() -> None:
    value: Any = 2**64
    for _ in range(100_000):
        value = [value]
    assert unstorable(value) is not None


def test_a_value_is_too_large_exactly_when_its_json_passes_the_limit() -> None:
    from engine.rules.values import MAX_OUTPUT_BYTES, too_large

    fits = "x" * (MAX_OUTPUT_BYTES - 2)  # the two quotes make it MAX_OUTPUT_BYTES
    assert too_large(fits) is None
    message, hint = too_large(fits + "x") or ("", "")
    assert f"{MAX_OUTPUT_BYTES + 1:,} bytes as JSON" in message and "file" in hint


def test_a_long_message_is_clipped_saying_how_much_went() -> None:
    from engine.rules.values import MAX_MESSAGE_CHARS, clipped

    assert clipped("x" * MAX_MESSAGE_CHARS) == "x" * MAX_MESSAGE_CHARS
    long = "ab" * MAX_MESSAGE_CHARS
    short = clipped(long)
    assert short.startswith(long[:MAX_MESSAGE_CHARS])
    assert short.endswith(f"[{MAX_MESSAGE_CHARS:,} more characters not kept]")
    assert len(short) < MAX_MESSAGE_CHARS + 50
