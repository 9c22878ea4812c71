"""MQTT 3.1.1 framing, packets and topic matching (OASIS mqtt-v3.1.1 sections 2-4)."""

from __future__ import annotations

import pytest

from citytwin.mqtt.codec import (
    PUBLISH,
    Connect,
    Framer,
    Message,
    ProtocolError,
    decode_connect,
    decode_publish,
    decode_subscribe,
    encode_connect,
    encode_publish,
    encode_subscribe,
    matches,
    valid_filter,
)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152])
def test_remaining_length_round_trips_at_every_varint_boundary(size: int) -> None:
    msg = Message("a/b", b"x" * (size - 5) if size > 5 else b"", 0)
    packet = encode_publish(msg)
    [(kind, flags, body)] = Framer().feed(packet)
    assert kind == PUBLISH
    assert decode_publish(flags, body) == msg


def test_packets_split_anywhere_are_reassembled() -> None:
    msgs = [Message(f"t/{n}", bytes([n]) * n, n % 2, False, n % 2 * (n + 1)) for n in range(50)]
    stream = b"".join(encode_publish(m) for m in msgs)
    for step in (1, 2, 3, 7, 64, 1000):
        framer, got = Framer(), []
        for i in range(0, len(stream), step):
            got += [decode_publish(f, b) for _, f, b in framer.feed(stream[i : i + step])]
        assert got == msgs
        assert not framer.buffer


def test_oversized_and_malformed_lengths_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        Framer(limit=10).feed(encode_publish(Message("t", b"x" * 20)))
    with pytest.raises(ProtocolError):
        Framer().feed(b"\x30\xff\xff\xff\xff\x01")


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00", b"\x00\x05ab", b"\x00\x01t"],  # too short for its topic or packet id
)
def test_truncated_publish_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_publish(2, body)  # QoS 1: needs a packet id too


def test_connect_round_trip_with_will_and_credentials() -> None:
    will = Message("dead/robot", b"gone", 1, True)
    hello = Connect("robot-1", False, 30, 4, "user", b"secret", will)
    [(_, _, body)] = Framer().feed(encode_connect(hello))
    assert decode_connect(body) == hello


def test_subscribe_round_trip() -> None:
    filters = [("/+/+/attrs", 1), ("a/#", 0)]
    [(_, _, body)] = Framer().feed(encode_subscribe(7, filters))
    assert decode_subscribe(body) == (7, filters)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("/+/+/attrs", "/key/dev/attrs", True),
        ("/+/+/attrs", "/key/dev/attrs/t", False),
        ("/+/+/attrs", "key/dev/attrs", False),
        ("+/+/attrs", "key/dev/attrs", True),
        ("a/#", "a", True),  # '#' also matches the parent level (4.7.1.2)
        ("a/#", "a/b/c", True),
        ("#", "$SYS/broker", False),  # $-topics are not matched by leading wildcards (4.7.2)
        ("$SYS/#", "$SYS/broker", True),
        ("+", "", True),
        ("a/+", "a/", True),
        ("a/b", "a/b/", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter.split("/"), topic.split("/")) is expected


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [("a/#", True), ("#", True), ("a/#/b", False), ("a#", False), ("a/+b", False), ("", False)],
)
def test_filter_validity(topic_filter: str, valid: bool) -> None:
    assert valid_filter(topic_filter) is valid
