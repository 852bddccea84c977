"""The few facts the video index reads straight from H.264 and HEVC packets, without decoding them.

Why: two questions about a stream decide whether reads may seek, and decoding to answer them costs ~15 ms
a frame at 1080p. Does the stream have B-slices (an AVI's decoding-order stamps then do not say which frame
a packet holds, and an SPS may leave the reorder depth out)? Is the first keyframe an IDR picture (which
no dropped leading frame can follow)? Both are in the first bytes of each NAL unit: its type, and for an
H.264 slice the two Exp-Golomb numbers that open the slice header (ITU-T H.264 7.3.3, H.265 7.3.1.2).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["nal_units", "nal_length_size", "h264_slice_kinds", "h264_starts_with_idr", "hevc_starts_with_idr",
           "starts_with_idr"]

H264_SLICE, H264_IDR = 1, 5
H264_B_SLICE = 1  # slice_type modulo 5: 0 P, 1 B, 2 I, 3 SP, 4 SI
HEVC_IDR_TYPES = frozenset({19, 20})  # IDR_W_RADL (its leading pictures decode), IDR_N_LP (none)
HEVC_VCL_MAX = 31


def nal_length_size(extradata: bytes | None, codec: str) -> int | None:
    """The NAL length-prefix size of an ``avcC``/``hvcC`` configuration (MP4, Matroska); None for Annex B
    (start codes: raw streams, TS, AVI) or no configuration."""
    if not extradata or extradata[0] != 1:  # both configurations start with version 1; Annex B with 0
        return None
    if codec == "h264" and len(extradata) > 4:  # lengthSizeMinusOne in the 5th byte
        return (extradata[4] & 3) + 1
    if codec == "hevc" and len(extradata) > 21:  # ... in the 22nd
        return (extradata[21] & 3) + 1
    return None


def nal_units(data: bytes, length_size: int | None) -> Iterator[bytes]:
    """The NAL units of one packet, each up to its first 32 bytes: length-prefixed where the stream's
    configuration says so (MP4-style ``avcC``), else split at start codes (Annex B: raw streams, AVI, TS)."""
    if length_size is None:
        at = data.find(b"\x00\x00\x01")
        while at >= 0:
            start = at + 3
            at = data.find(b"\x00\x00\x01", start)
            if start < len(data):
                yield data[start:min(start + 32, len(data) if at < 0 else at)]
        return
    at = 0
    while at + length_size <= len(data):
        size = int.from_bytes(data[at:at + length_size], "big")
        start = at + length_size
        if size <= 0 or start + size > len(data):
            return
        yield data[start:start + min(size, 32)]
        at = start + size


def _unescaped(payload: bytes) -> bytes:
    """``payload`` without emulation-prevention bytes (0x000003 -> 0x0000)."""
    return payload.replace(b"\x00\x00\x03", b"\x00\x00")


def _two_exp_golomb(rbsp: bytes) -> tuple[int, int] | None:
    """The first two unsigned Exp-Golomb numbers of ``rbsp``; None if it ends first."""
    bits = int.from_bytes(rbsp, "big")
    width = len(rbsp) * 8
    pos, out = 0, []
    for _ in range(2):
        zeros = 0
        while pos < width and not (bits >> (width - 1 - pos)) & 1:
            zeros += 1
            pos += 1
        if pos + zeros >= width or zeros > 31:
            return None
        value = (bits >> (width - 1 - pos - zeros)) & ((1 << (zeros + 1)) - 1)
        out.append(value - 1)
        pos += zeros + 1
    return out[0], out[1]


def h264_slice_kinds(data: bytes, length_size: int | None) -> set[int]:
    """The kinds (``slice_type % 5``) of the H.264 slices in one packet; empty if none could be read."""
    kinds = set()
    for nal in nal_units(data, length_size):
        if len(nal) > 1 and (nal[0] & 0x1F) in (H264_SLICE, H264_IDR):
            parsed = _two_exp_golomb(_unescaped(nal[1:]))
            if parsed is not None and parsed[1] <= 9:
                kinds.add(parsed[1] % 5)
    return kinds


def h264_starts_with_idr(data: bytes, length_size: int | None) -> bool:
    """Whether the packet holds an IDR picture (no frame after it in decoding order is shown before it)."""
    return any(len(nal) and (nal[0] & 0x1F) == H264_IDR for nal in nal_units(data, length_size))


def hevc_starts_with_idr(data: bytes, length_size: int | None) -> bool:
    """Whether the packet's first picture is an IDR (its leading pictures, if any, decode: RADL)."""
    for nal in nal_units(data, length_size):
        kind = (nal[0] >> 1) & 0x3F if nal else 63
        if kind <= HEVC_VCL_MAX:
            return kind in HEVC_IDR_TYPES
    return False


def starts_with_idr(codec: str, data: bytes, length_size: int | None) -> bool:
    """Whether a packet of ``codec`` is an IDR picture; False for codecs these NAL rules do not cover."""
    if codec == "h264":
        return h264_starts_with_idr(data, length_size)
    if codec == "hevc":
        return hevc_starts_with_idr(data, length_size)
    return False
