"""The picture size an HEVC or VVC byte stream declares, read from its parameter sets.

A reference decoder writes raw planes with no header, so the size to reshape them to comes
from the stream itself: the coded size in the sequence (VVC: and picture) parameter set
minus the conformance window, which is what the decoders crop to. Only the leading fields
of those parameter sets are read (ITU-T H.265 7.3.2.2, H.266 7.3.2.3-7.3.3 and 7.3.2.4);
the rest of the stream is the decoder's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from bench.errors import CodecError

_START_CODE = re.compile(b"\x00\x00\x01")
_EMULATION_PREVENTION = re.compile(b"\x00\x00\x03")

HEVC_SPS = 33
VVC_SPS, VVC_PPS = 15, 16


@dataclass(frozen=True)
class PictureSize:
    """The size of the decoded (cropped) picture, and the chroma format it is coded in."""

    width: int
    height: int
    #: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4
    chroma_format_idc: int


class _Bits:
    """An RBSP read MSB first: fixed-length ``u(n)`` and Exp-Golomb ``ue(v)``."""

    def __init__(self, rbsp: bytes, what: str) -> None:
        self.data, self.pos, self.what = rbsp, 0, what

    def u(self, n: int) -> int:
        if self.pos + n > 8 * len(self.data):
            raise CodecError(f"{self.what} ends early (truncated or not a parameter set)")
        value = 0
        for _ in range(n):
            value = (value << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise CodecError(f"{self.what} has an Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def skip(self, n: int) -> None:
        self.u(n)

    def align(self) -> None:
        self.skip(-self.pos % 8)


def nal_units(stream: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B byte stream (start codes and trailing zeros removed;
    emulation prevention bytes still in)."""
    starts = [m.end() for m in _START_CODE.finditer(stream)]
    ends = [begin - 3 for begin in starts[1:]] + [len(stream)] if starts else []
    for begin, end in zip(starts, ends, strict=True):
        yield stream[begin:end].rstrip(b"\x00")


def _rbsp(nal: bytes, header_bytes: int) -> bytes:
    return _EMULATION_PREVENTION.sub(b"\x00\x00", nal[header_bytes:])


def _cropped(width: int, height: int, chroma_format_idc: int, window: tuple[int, int, int, int],
             what: str) -> PictureSize:
    # Conformance window offsets count chroma samples: SubWidthC x SubHeightC luma samples.
    sub_w = 2 if chroma_format_idc in (1, 2) else 1
    sub_h = 2 if chroma_format_idc == 1 else 1
    left, right, top, bottom = window
    size = PictureSize(width - sub_w * (left + right), height - sub_h * (top + bottom), chroma_format_idc)
    if size.width <= 0 or size.height <= 0:
        raise CodecError(f"{what}: conformance window {window} leaves no picture of {width}x{height}")
    return size


def _window(bits: _Bits) -> tuple[int, int, int, int]:
    return (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)


def hevc_picture_size(stream: bytes) -> PictureSize:
    """The cropped picture size of an HEVC stream's first sequence parameter set."""
    sps = next((n for n in nal_units(stream) if len(n) > 2 and (n[0] >> 1) & 0x3F == HEVC_SPS), None)
    if sps is None:
        raise CodecError("no HEVC sequence parameter set in the stream (not an HEVC stream)")
    bits = _Bits(_rbsp(sps, 2), "HEVC sequence parameter set")
    bits.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.u(3)
    bits.skip(1)  # sps_temporal_id_nesting_flag
    _hevc_profile_tier_level(bits, max_sub_layers_minus1)
    bits.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = bits.ue()
    if chroma_format_idc > 3:
        raise CodecError(f"HEVC sequence parameter set: chroma_format_idc {chroma_format_idc}")
    if chroma_format_idc == 3 and bits.u(1):  # separate_colour_plane_flag: ChromaArrayType 0
        chroma_format_idc = 0
    width, height = bits.ue(), bits.ue()
    return _cropped(width, height, chroma_format_idc, _window(bits), "HEVC sequence parameter set")


def _hevc_profile_tier_level(bits: _Bits, max_sub_layers_minus1: int) -> None:
    # general profile space, tier, idc, 32 compatibility flags, 4 source flags, 43 + 1
    # constraint bits: 88 bits; then general_level_idc
    bits.skip(88 + 8)
    present = [(bits.u(1), bits.u(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        bits.skip(88 * profile_present + 8 * level_present)


def vvc_picture_size(stream: bytes) -> PictureSize:
    """The cropped picture size of a VVC stream's first sequence and picture parameter sets."""
    units = list(nal_units(stream))
    sps = next((n for n in units if len(n) > 2 and n[1] >> 3 == VVC_SPS), None)
    pps = next((n for n in units if len(n) > 2 and n[1] >> 3 == VVC_PPS), None)
    if sps is None or pps is None:
        missing = "sequence" if sps is None else "picture"
        raise CodecError(f"no VVC {missing} parameter set in the stream (not a VVC stream)")

    bits = _Bits(_rbsp(sps, 2), "VVC sequence parameter set")
    bits.skip(4 + 4)  # sps_seq_parameter_set_id, sps_video_parameter_set_id
    max_sublayers_minus1 = bits.u(3)
    chroma_format_idc = bits.u(2)
    bits.skip(2)  # sps_log2_ctu_size_minus5
    if bits.u(1):  # sps_ptl_dpb_hrd_params_present_flag
        _vvc_profile_tier_level(bits, max_sublayers_minus1)
    bits.skip(1)  # sps_gdr_enabled_flag
    if bits.u(1):  # sps_ref_pic_resampling_enabled_flag
        bits.skip(1)  # sps_res_change_in_clvs_allowed_flag
    max_width, max_height = bits.ue(), bits.ue()
    sps_window = _window(bits)

    bits = _Bits(_rbsp(pps, 2), "VVC picture parameter set")
    bits.skip(6 + 4 + 1)  # pps_pic_parameter_set_id, pps_seq_parameter_set_id, mixed nalu types
    width, height = bits.ue(), bits.ue()
    explicit = bits.u(1)  # pps_conformance_window_flag
    if explicit:
        window = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    else:
        # inferred: the SPS's window at the maximum size, none at any other (H.266 7.4.3.5)
        window = sps_window if (width, height) == (max_width, max_height) else (0, 0, 0, 0)
    return _cropped(width, height, chroma_format_idc, window, "VVC parameter sets")


def _vvc_profile_tier_level(bits: _Bits, max_sublayers_minus1: int) -> None:
    # general_profile_idc, general_tier_flag, general_level_idc, frame-only and multilayer flags
    bits.skip(7 + 1 + 8 + 1 + 1)
    if bits.u(1):  # gci_present_flag
        # 71 constraint flags and fields in every edition, then gci_num_additional_bits
        # (gci_num_reserved_bits in the first) and that many bits
        bits.skip(71)
        bits.skip(bits.u(8))
    bits.align()  # gci_alignment_zero_bit
    level_present = [bits.u(1) for _ in range(max_sublayers_minus1)]
    bits.align()  # ptl_reserved_zero_bit
    bits.skip(8 * sum(level_present))  # sublayer_level_idc
    bits.skip(32 * bits.u(8))  # ptl_num_sub_profiles, general_sub_profile_idc
