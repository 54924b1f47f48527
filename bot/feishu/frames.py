"""The long connection's one message type, Feishu's `pbbp2.Frame`, read and written by hand.

Written here rather than generated: it is one proto2 message of nine scalar fields and a repeated
key/value pair, so a hundred lines of codec beat a runtime dependency (the `protobuf` package) and a
generated module on the hot path, and every byte from the socket is checked as hostile input. Tests
decode our frames with lark-oapi's generated module and ours with it, so the two cannot drift apart
(docs/feishu-protocol.md, "Long connection").

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1;  required uint64 LogID = 2;
      required int32 service = 3; required int32 method = 4;     // 0 control, 1 data
      repeated Header headers = 5;
      optional string payload_encoding = 6; optional string payload_type = 7;
      optional bytes payload = 8;  optional string LogIDNew = 9;
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL = 0
DATA = 1
# Far above anything Feishu sends (an event is a few KB, fragmented beyond that); a frame claiming more
# is refused before anything is allocated for it.
MAX_FRAME_BYTES = 4 * 1024 * 1024
_MAX_HEADERS = 64

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class FrameError(ValueError):
    """Bytes that are not a well-formed Frame."""


@dataclass(frozen=True)
class Frame:
    seq_id: int
    log_id: int
    service: int
    method: int
    headers: tuple[tuple[str, str], ...] = ()
    payload: bytes | None = None
    payload_encoding: str | None = None
    payload_type: str | None = None
    log_id_new: str | None = None
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key, value in self.headers:
            self._index.setdefault(key, value)  # the first wins, as the SDKs' lookups do

    def header(self, key: str) -> str | None:
        return self._index.get(key)

    def with_headers(self, *extra: tuple[str, str], payload: bytes | None) -> Frame:
        """This frame sent back: same ids and headers, `extra` headers added, a new payload."""
        return Frame(
            seq_id=self.seq_id,
            log_id=self.log_id,
            service=self.service,
            method=self.method,
            headers=(*self.headers, *extra),
            payload=payload,
            payload_encoding=self.payload_encoding,
            payload_type=self.payload_type,
            log_id_new=self.log_id_new,
        )


def encode(frame: Frame) -> bytes:
    out = bytearray()
    _varint_field(out, 1, frame.seq_id)
    _varint_field(out, 2, frame.log_id)
    _varint_field(out, 3, frame.service)
    _varint_field(out, 4, frame.method)
    for key, value in frame.headers:
        header = bytearray()
        _bytes_field(header, 1, key.encode())
        _bytes_field(header, 2, value.encode())
        _bytes_field(out, 5, bytes(header))
    for number, text in ((6, frame.payload_encoding), (7, frame.payload_type)):
        if text is not None:
            _bytes_field(out, number, text.encode())
    if frame.payload is not None:
        _bytes_field(out, 8, frame.payload)
    if frame.log_id_new is not None:
        _bytes_field(out, 9, frame.log_id_new.encode())
    return bytes(out)


def decode(data: bytes) -> Frame:
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"frame larger than {MAX_FRAME_BYTES} bytes")
    scalars: dict[int, int] = {}
    texts: dict[int, bytes] = {}
    headers: list[tuple[str, str]] = []
    for number, wire, value in _fields(data):
        if number in (1, 2, 3, 4):
            if wire != _VARINT or not isinstance(value, int):
                raise FrameError(f"field {number} is not a varint")
            scalars[number] = value
        elif number == 5:
            if not isinstance(value, bytes):
                raise FrameError("a header is not a message")
            if len(headers) >= _MAX_HEADERS:
                raise FrameError(f"more than {_MAX_HEADERS} headers")
            headers.append(_header(value))
        elif number in (6, 7, 8, 9):
            if not isinstance(value, bytes):
                raise FrameError(f"field {number} is not length-delimited")
            texts[number] = value
        # Unknown fields are skipped, as protobuf readers do: a newer server may add some.
    missing = [
        name
        for number, name in ((1, "SeqID"), (2, "LogID"), (3, "service"), (4, "method"))
        if number not in scalars
    ]
    if missing:
        raise FrameError(f"required field {missing[0]} missing")
    return Frame(
        seq_id=scalars[1],
        log_id=scalars[2],
        service=_int32(scalars[3]),
        method=_int32(scalars[4]),
        headers=tuple(headers),
        payload=texts.get(8),
        payload_encoding=_text(texts.get(6)),
        payload_type=_text(texts.get(7)),
        log_id_new=_text(texts.get(9)),
    )


# --- wire format -----------------------------------------------------------------------------------------


def _write_varint(out: bytearray, value: int) -> None:
    value &= (1 << 64) - 1  # negative int32s travel as ten-byte two's complement, as protobuf does
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _varint_field(out: bytearray, number: int, value: int) -> None:
    _write_varint(out, number << 3 | _VARINT)
    _write_varint(out, value)


def _bytes_field(out: bytearray, number: int, value: bytes) -> None:
    _write_varint(out, number << 3 | _BYTES)
    _write_varint(out, len(value))
    out += value


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise FrameError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift >= 70:
            raise FrameError("varint longer than ten bytes")


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    fields: list[tuple[int, int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FrameError("field number 0")
        if wire == _VARINT:
            value, at = _read_varint(data, at)
            fields.append((number, wire, value))
        elif wire == _BYTES:
            length, at = _read_varint(data, at)
            if at + length > len(data):
                raise FrameError("length-delimited field runs past the end")
            fields.append((number, wire, data[at : at + length]))
            at += length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if at + size > len(data):
                raise FrameError("fixed-width field runs past the end")
            fields.append((number, wire, int.from_bytes(data[at : at + size], "little")))
            at += size
        else:
            raise FrameError(f"unsupported wire type {wire}")
    return fields


def _header(data: bytes) -> tuple[str, str]:
    parts: dict[int, bytes] = {}
    for number, _, value in _fields(data):
        if number in (1, 2) and isinstance(value, bytes):
            parts[number] = value
    if 1 not in parts or 2 not in parts:
        raise FrameError("a header without its key or value")
    return _text(parts[1]) or "", _text(parts[2]) or ""


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise FrameError("a string field is not UTF-8") from None


def _int32(value: int) -> int:
    value &= (1 << 64) - 1
    value = value - (1 << 64) if value >= 1 << 63 else value
    if not -(1 << 31) <= value < 1 << 31:
        raise FrameError("int32 field out of range")
    return value
