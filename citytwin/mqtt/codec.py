"""MQTT 3.1.1 packets (OASIS mqtt-v3.1.1, section 2-3): framing, encoding, decoding.

Shared by the embedded broker and the gateway's client. Only what those two need: no MQTT 5
properties (a v5 CONNECT is refused with return code 1, 3.1 of the spec).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = range(8, 15)
MAX_PACKET = 268_435_455  # the largest remaining length the 4-byte varint can say (2.2.3)
PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
_U16 = struct.Struct("!H")


class ProtocolError(Exception):
    """The peer broke the protocol: the connection is closed (4.8)."""


@dataclass(frozen=True, slots=True)
class Message:
    """An application message (a PUBLISH): `mid` is 0 for QoS 0."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    mid: int = 0
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean: bool
    keepalive: int
    level: int
    username: str | None = None
    password: bytes | None = None
    will: Message | None = None


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return _U16.pack(len(raw)) + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes(((kind << 4) | flags,)) + _varint(len(body)) + body


def encode_publish(msg: Message) -> bytes:
    flags = (msg.qos << 1) | (8 if msg.dup else 0) | (1 if msg.retain else 0)
    mid = _U16.pack(msg.mid) if msg.qos else b""
    return packet(PUBLISH, flags, _string(msg.topic) + mid + msg.payload)


def encode_ack(kind: int, mid: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 2, 3.6.1), PUBCOMP, UNSUBACK."""
    return packet(kind, 2 if kind == PUBREL else 0, _U16.pack(mid))


def encode_connect(c: Connect) -> bytes:
    flags = 2 if c.clean else 0
    payload = _string(c.client_id)
    if c.will is not None:
        flags |= 4 | (c.will.qos << 3) | (32 if c.will.retain else 0)
        payload += _string(c.will.topic) + _string(c.will.payload)
    if c.username is not None:
        flags |= 128
        payload += _string(c.username)
    if c.password is not None:
        flags |= 64
        payload += _string(c.password)
    header = _string("MQTT") + bytes((c.level, flags)) + _U16.pack(c.keepalive)
    return packet(CONNECT, 0, header + payload)


def encode_connack(session_present: bool, code: int) -> bytes:
    return packet(CONNACK, 0, bytes((1 if session_present else 0, code)))


def encode_subscribe(mid: int, filters: list[tuple[str, int]]) -> bytes:
    body = _U16.pack(mid) + b"".join(_string(f) + bytes((q,)) for f, q in filters)
    return packet(SUBSCRIBE, 2, body)


def encode_suback(mid: int, codes: list[int]) -> bytes:
    return packet(SUBACK, 0, _U16.pack(mid) + bytes(codes))


class Framer:
    """Splits a byte stream into packets: (type, flags, body)."""

    def __init__(self, limit: int = MAX_PACKET) -> None:
        self.buffer = bytearray()
        self.limit = limit

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buf = self.buffer
        buf += data
        pos, end, out = 0, len(buf), []
        while (header := _remaining(buf, pos + 1, end)) is not None:
            length, start = header
            if length > self.limit:
                raise ProtocolError(f"packet of {length} bytes exceeds the limit")
            if end - start < length:
                break
            first = buf[pos]
            out.append((first >> 4, first & 0x0F, bytes(buf[start : start + length])))
            pos = start + length
        del buf[:pos]
        return out


def _remaining(buf: bytearray, i: int, end: int) -> tuple[int, int] | None:
    """The remaining length at buf[i:] and where the body starts; None if not all there (2.2.3)."""
    length = 0
    for shift in (0, 7, 14, 21):
        if i >= end:
            return None
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length, i
    raise ProtocolError("malformed remaining length")


class _Cursor:
    """Reads the fields of one packet's body (1.5 data representations)."""

    __slots__ = ("body", "pos")

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def u8(self) -> int:
        if self.pos >= len(self.body):
            raise ProtocolError("packet too short")
        self.pos += 1
        return self.body[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > len(self.body):
            raise ProtocolError("packet too short")
        (value,) = _U16.unpack_from(self.body, self.pos)
        self.pos += 2
        return value

    def raw(self) -> bytes:
        n = self.u16()
        if self.pos + n > len(self.body):
            raise ProtocolError("string runs past the packet")
        self.pos += n
        return self.body[self.pos - n : self.pos]

    def text(self) -> str:
        try:
            value = self.raw().decode()
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None
        if "\x00" in value:
            raise ProtocolError("string holds U+0000")  # 1.5.3
        return value

    def rest(self) -> bytes:
        return self.body[self.pos :]

    @property
    def done(self) -> bool:
        return self.pos >= len(self.body)


def decode_publish(flags: int, body: bytes) -> Message:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    (n,) = _U16.unpack_from(body, 0) if len(body) >= 2 else (len(body) + 1,)
    if 2 + n + (2 if qos else 0) > len(body):
        raise ProtocolError("PUBLISH too short")
    try:
        topic = body[2 : 2 + n].decode()
    except UnicodeDecodeError:
        raise ProtocolError("topic is not UTF-8") from None
    pos = 2 + n
    mid = 0
    if qos:
        (mid,) = _U16.unpack_from(body, pos)
        pos += 2
        if mid == 0:
            raise ProtocolError("PUBLISH with packet identifier 0")
    return Message(topic, body[pos:], qos, bool(flags & 1), mid, bool(flags & 8))


def decode_mid(body: bytes) -> int:
    if len(body) < 2:
        raise ProtocolError("acknowledgement too short")
    return _U16.unpack_from(body, 0)[0]


def decode_connect(body: bytes) -> Connect:
    c = _Cursor(body)
    name, level, flags = c.text(), c.u8(), c.u8()
    if name not in ("MQTT", "MQIsdp"):
        raise ProtocolError(f"unknown protocol {name!r}")
    keepalive = c.u16()
    client_id = c.text() if level in (3, 4) else ""
    if level not in (3, 4):
        return Connect(client_id, True, keepalive, level)
    will = None
    if flags & 4:
        qos = (flags >> 3) & 3
        if qos == 3:
            raise ProtocolError("will QoS 3")
        will = Message(c.text(), c.raw(), qos, bool(flags & 32))
    username = c.text() if flags & 128 else None
    password = c.raw() if flags & 64 else None
    return Connect(client_id, bool(flags & 2), keepalive, level, username, password, will)


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]]]:
    c = _Cursor(body)
    mid, filters = c.u16(), []
    while not c.done:
        filters.append((c.text(), c.u8() & 3))
    if not filters:
        raise ProtocolError("SUBSCRIBE without a topic filter")  # 3.8.3
    return mid, filters


def decode_unsubscribe(body: bytes) -> tuple[int, list[str]]:
    c = _Cursor(body)
    mid, filters = c.u16(), []
    while not c.done:
        filters.append(c.text())
    return mid, filters


def decode_suback(body: bytes) -> tuple[int, list[int]]:
    return decode_mid(body), list(body[2:])


def valid_filter(f: str) -> bool:
    """4.7.1: '#' only last and alone in its level, '+' alone in its level."""
    if not f:
        return False
    levels = f.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def valid_topic(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic


def matches(levels: list[str], topic_levels: list[str]) -> bool:
    """Does a (split) filter match a (split) topic name (4.7)? $-topics need a literal start."""
    if topic_levels[0][:1] == "$" and levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
            return False
    return len(levels) == len(topic_levels)
