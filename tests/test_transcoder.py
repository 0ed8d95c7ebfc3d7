"""The fast transcoder writes the library's bytes and reads them back as the library does.

``store.transcoder.FastJSONTranscoder`` is a drop-in for the library's
``JSONTranscoder``: every event Harbor writes must encode to the same bytes and
decode to equal values, and whatever the fast path does not handle exactly
(floats, huge integers, non-string keys, NaN, unknown tags) must give the
library's own result or error.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.registry import Registry
from domain.transcodings import EnumAsValue, UUIDAsHex, register_domain_transcodings
from domain.values import Channel, PriorContact, Standing, YearMonth
from store import open_registry
from store.config import TRANSCODER_TOPIC
from store.transcoder import FastJSONTranscoder
from tests.conftest import TODAY
from tests.test_roundtrip import write_every_event


def _registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    # The registrations Registry.register_transcodings makes, library's first.
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    register_domain_transcodings(transcoder)
    return transcoder


STOCK = _registered(JSONTranscoder())
FAST = _registered(FastJSONTranscoder())


def test_harbor_stores_use_the_fast_transcoder(store_url: str) -> None:
    registry = open_registry(store_url, clock=lambda: TODAY)
    try:
        assert registry.env["TRANSCODER_TOPIC"] == TRANSCODER_TOPIC
        assert type(registry.mapper.transcoder) is FastJSONTranscoder
    finally:
        registry.close()


def test_every_event_harbor_writes_has_the_librarys_bytes(store_url: str) -> None:
    registry = open_registry(store_url, clock=lambda: TODAY)
    try:
        write_every_event(registry)
        notifications = registry.recorder.select_notifications(1, 10000)
        assert len(notifications) > 40
        for n in notifications:
            state = STOCK.decode(n.state)
            assert FAST.decode(n.state) == state, n.topic
            assert STOCK.encode(state) == n.state, "stored with the library's bytes"
            assert FAST.encode(state) == n.state, n.topic
    finally:
        registry.close()


def test_a_member_event_round_trips_with_its_types() -> None:
    member = uuid4()
    state = {
        "timestamp": datetime(2026, 11, 27, 8, 30, 1, 123456, tzinfo=UTC),
        "unit_id": "daning-center",
        "occurred_on": date(2026, 4, 1),
        "case_id": member,
        "channel": Channel.WALK_IN,
        "standing": Standing.FULL,
        "dues_paid_through": YearMonth(2026, 4),
        "prior_contacts": [PriorContact(who="工作单位负责人", answer="单位未建立党组织")],
        "amount": Decimal("12.50"),
        "note": '带"引号"与\n换行',
        "count": 3,
        "flag": True,
        "nothing": None,
    }
    encoded = FAST.encode(state)
    assert encoded == STOCK.encode(state)
    decoded = FAST.decode(encoded)
    assert decoded == state
    assert type(decoded["case_id"]) is UUID and decoded["case_id"].int == member.int
    assert decoded["channel"] is Channel.WALK_IN
    assert type(decoded["prior_contacts"][0]) is PriorContact


@pytest.mark.parametrize(
    "value",
    [
        {"ratio": 0.1},  # floats: json's repr decides
        {"big": 2**70},  # past 64 bits: orjson cannot
        {"small": -(2**64)},
        {1: "int key"},  # json turns keys into strings its own way
        {"nested": [{"when": date(2020, 1, 1)}, (1, 2)]},
        {"tag_lookalike": {"_type_": "date", "other": 1}},
    ],
)
def test_what_the_fast_path_cannot_write_exactly_goes_the_librarys_way(value: Any) -> None:
    assert FAST.encode(value) == STOCK.encode(value)
    assert FAST.decode(STOCK.encode(value)) == STOCK.decode(STOCK.encode(value))


def test_a_string_valued_enum_is_written_as_json_writes_it() -> None:
    class Colour(str, Enum):  # noqa: UP042 - the str mix-in is the point
        RED = "red"

    fast = FastJSONTranscoder()
    stock = JSONTranscoder()
    for transcoder in (fast, stock):  # registered, and still not tagged by json
        transcoder.register(EnumAsValue(Colour))
    assert fast.encode({"c": Colour.RED}) == stock.encode({"c": Colour.RED}) == b'{"c":"red"}'


def test_input_orjson_refuses_is_read_as_json_reads_it() -> None:
    huge = 123456789012345678901234567890
    assert FAST.decode(b'{"x":%d}' % huge) == {"x": huge}
    assert math.isnan(FAST.decode(b'{"x":NaN}')["x"])


def test_unregistered_values_fail_as_the_library_fails() -> None:
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.encode({"x": object()})
    with pytest.raises(TranscodingNotRegisteredError):
        FAST.decode(b'{"x":{"_type_":"no_such_type","_data_":"1"}}')


def test_a_uuid_decoded_fast_is_an_ordinary_uuid() -> None:
    original = uuid4()
    decoded = UUIDAsHex().decode(original.hex)
    assert decoded == original and hash(decoded) == hash(original)
    assert str(decoded) == str(original) and decoded.version == 4
    assert UUIDAsHex().decode(str(original)) == original  # the long form, as UUID() takes it
    with pytest.raises(ValueError):
        UUIDAsHex().decode("not-a-uuid")


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=20),
    st.dates(),
    st.uuids(),
    st.sampled_from(list(Channel)),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.builds(YearMonth, st.integers(1950, 2100), st.integers(1, 12)),
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _values, max_size=8))
def test_any_value_of_these_types_encodes_and_decodes_as_the_library_does(
    value: dict[str, Any],
) -> None:
    encoded = STOCK.encode(value)
    assert FAST.encode(value) == encoded
    assert FAST.decode(encoded) == STOCK.decode(encoded)


def test_the_registry_can_be_made_with_the_stock_transcoder_too(store_url: str) -> None:
    # What the library would read with no TRANSCODER_TOPIC at all: the same events.
    writer = open_registry(store_url, clock=lambda: TODAY)
    try:
        write_every_event(writer)
        env = {k: v for k, v in writer.env.items() if k != "TRANSCODER_TOPIC"}
    finally:
        writer.close()
    reader = Registry(env, clock=lambda: TODAY)
    fast_reader = open_registry(store_url, clock=lambda: TODAY)
    try:
        assert type(reader.mapper.transcoder) is JSONTranscoder
        stock_events = [
            reader.mapper.to_domain_event(n) for n in reader.recorder.select_notifications(1, 10000)
        ]
        fast_events = [
            fast_reader.mapper.to_domain_event(n)
            for n in fast_reader.recorder.select_notifications(1, 10000)
        ]
        assert stock_events == fast_events
    finally:
        reader.close()
        fast_reader.close()
