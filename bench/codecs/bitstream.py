"""The self-describing container of a neural codec's bitstream: a compact header, then strings.

``decode`` gets the bytes and nothing else, so the header carries what decoding needs and
the rate counts all of it (``bpp = 8 * len(stream) / (H * W)``)::

    offset size  field
    0      2     magic b"BN"
    2      1     format version (1)
    3      1     architecture id (bits 0-6); bit 7 set: an entropy-estimate container
    4      1     quality (the zoo's index)
    5      1-3   original height, LEB128 varint (1..65535)
    .      1-3   original width, LEB128 varint (1..65535)
    .      1-5   byte length of each string, LEB128 varint (one per string; the number
                 of strings follows from the architecture)
    .      8     estimate containers only: estimated bits, float64 little-endian
    .      2     check: low 16 bits of CRC-32 over the weights id and every other byte
    .      ...   the strings, concatenated

A hyperprior stream of a 768x512 image has 15 header bytes (16 once y takes 16 KiB; 10
to 19 in general). The latent shapes are not stored: they follow from (H, W) and the
padding rule (each side padded up to a multiple of 64). The check catches corruption and
truncation before the entropy decoder sees the strings (CompressAI's rANS decoder does
no bounds checking) and a stream made with other weights, which would otherwise decode
to noise.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.errors import CodecError

MAGIC = b"BN"
FORMAT_VERSION = 1
MAX_SIDE = 65535
_ESTIMATE_BIT = 0x80


@dataclass(frozen=True)
class Header:
    """What a stream says about itself."""

    arch_id: int
    quality: int
    height: int
    width: int
    #: Likelihood estimate in bits; None for a real bitstream.
    estimated_bits: float | None = None


def write_varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, high bit set on all bytes but the last."""
    if value < 0:
        raise ValueError(f"varint of a negative number {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _check(weights_id: str, body: bytes) -> bytes:
    return struct.pack("<H", zlib.crc32(body, zlib.crc32(weights_id.encode())) & 0xFFFF)


def pack(header: Header, strings: Sequence[bytes], weights_id: str) -> bytes:
    """The complete stream: header, check and strings."""
    if not (0 < header.arch_id < _ESTIMATE_BIT and 0 < header.quality < 256):
        raise ValueError(f"arch id {header.arch_id} or quality {header.quality} out of range")
    for side in (header.height, header.width):
        if not 0 < side <= MAX_SIDE:
            raise CodecError(f"image side {side} is outside 1..{MAX_SIDE}, which the stream header can hold")
    arch = header.arch_id | (_ESTIMATE_BIT if header.estimated_bits is not None else 0)
    fields = bytearray(MAGIC + bytes([FORMAT_VERSION, arch, header.quality]))
    fields += write_varint(header.height) + write_varint(header.width)
    for s in strings:
        fields += write_varint(len(s))
    if header.estimated_bits is not None:
        fields += struct.pack("<d", header.estimated_bits)
    payload = b"".join(strings)
    return bytes(fields) + _check(weights_id, bytes(fields) + payload) + payload


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Corrupt("truncated header")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self, max_bytes: int) -> int:
        value = 0
        for i in range(max_bytes):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise _Corrupt("malformed length field")


class _Corrupt(Exception):
    pass


WeightsFor = Callable[[int, int], str]


def unpack(stream: bytes, strings_per_arch: Mapping[int, int], weights_for: WeightsFor) -> tuple[Header, list[bytes]]:
    """Parse and check a stream; a ``CodecError`` saying what is wrong otherwise.

    ``strings_per_arch`` maps every architecture id this reader knows to its number of
    strings. ``weights_for(arch_id, quality)`` returns the id of the weights that must
    have made the stream (or raises ``CodecError``, e.g. for another architecture).
    """
    try:
        return _unpack(bytes(stream), strings_per_arch, weights_for)
    except _Corrupt as exc:
        raise CodecError(f"corrupt or foreign stream: {exc}") from None


def _unpack(stream: bytes, strings_per_arch: Mapping[int, int], weights_for: WeightsFor) -> tuple[Header, list[bytes]]:
    r = _Reader(stream)
    if r.take(len(MAGIC)) != MAGIC:
        raise _Corrupt(f"does not start with {MAGIC!r} (not a bench neural stream)")
    version, arch, quality = r.take(3)
    if version != FORMAT_VERSION:
        raise _Corrupt(f"format version {version}, this reader knows {FORMAT_VERSION}")
    arch_id = arch & ~_ESTIMATE_BIT
    if arch_id not in strings_per_arch:
        raise _Corrupt(f"unknown architecture id {arch_id}")
    height, width = r.varint(3), r.varint(3)
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise _Corrupt(f"image size {height}x{width} is out of range")
    lengths = [r.varint(5) for _ in range(strings_per_arch[arch_id])]
    estimated = struct.unpack("<d", r.take(8))[0] if arch & _ESTIMATE_BIT else None
    fields_end = r.pos
    check = r.take(2)
    if len(stream) - r.pos != sum(lengths):
        raise _Corrupt(f"the header announces {sum(lengths)} payload bytes, the stream has {len(stream) - r.pos}")
    if _check(weights_for(arch_id, quality), stream[:fields_end] + stream[r.pos :]) != check:
        raise _Corrupt("checksum mismatch (damaged bytes, or made with other weights than this codec's)")
    strings, pos = [], r.pos
    for n in lengths:
        strings.append(stream[pos : pos + n])
        pos += n
    return Header(arch_id, quality, height, width, estimated), strings
