"""What the index reads from H.264/HEVC packets without decoding, checked against what the decoder says of
the same frames (real streams made with PyAV: Annex B and MP4's length-prefixed NAL units)."""

from __future__ import annotations

import av
import pytest

from _video_fixtures import numbered_frames
from hfnet_core.data.nal_units import (
    H264_B_SLICE,
    _two_exp_golomb,
    h264_slice_kinds,
    h264_starts_with_idr,
    hevc_starts_with_idr,
    nal_length_size,
    nal_units,
)
from hfnet_core.data.video import write_video

PICTURE_KIND = {1: 2, 2: 0, 3: 1}  # the decoder's picture type (I, P, B) as slice_type % 5


def _packets_and_pictures(path) -> tuple[list[bytes], list[int], int | None]:
    """Each packet's bytes in file order, the slice kind the decoder reports for it, and the NAL length size."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        length_size = nal_length_size(bytes(s.codec_context.extradata or b""), s.codec_context.name)
        packets = [p for p in c.demux(s) if p.size]
        data, order = [bytes(p) for p in packets], [p.pts for p in packets]
    with av.open(str(path)) as c:
        kinds = {f.pts: PICTURE_KIND[int(f.pict_type)] for f in c.decode(c.streams.video[0])}
    return data, [kinds[t] for t in order], length_size


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".ts"])
@pytest.mark.parametrize("bframes", ["0", "2"])
def test_h264_slice_kinds_match_the_decoders_picture_types(tmp_path, ext, bframes) -> None:
    path = write_video(tmp_path / f"s{ext}", numbered_frames(n=40), fps=25,
                       options={"g": "12", "bf": bframes, "x264-params": "scenecut=0"})
    data, kinds, length_size = _packets_and_pictures(path)
    assert (length_size is None) is (ext == ".ts")  # MP4 and Matroska store avcC: 4-byte lengths
    parsed = [h264_slice_kinds(d, length_size) for d in data]
    assert parsed == [{k} for k in kinds]
    assert any(H264_B_SLICE in p for p in parsed) is (bframes == "2")
    assert h264_starts_with_idr(data[0], length_size)
    assert not any(h264_starts_with_idr(d, length_size) for d in data[1:12])


def test_hevc_idr_and_cra_are_told_apart(tmp_path) -> None:
    closed = write_video(tmp_path / "closed.hevc", numbered_frames(n=30), fps=25, codec="libx265",
                         options={"x265-params": "keyint=10:min-keyint=10:open-gop=0:log-level=none"})
    opened = write_video(tmp_path / "open.mkv", numbered_frames(n=30), fps=25, codec="libx265",
                         options={"x265-params": "keyint=10:min-keyint=10:open-gop=1:bframes=3:log-level=none"})
    for path, idr_later in ((closed, True), (opened, False)):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            length_size = nal_length_size(bytes(s.codec_context.extradata or b""), s.codec_context.name)
            keys = [bytes(p) for p in c.demux(s) if p.size and p.is_keyframe]
        assert hevc_starts_with_idr(keys[0], length_size)  # every stream starts with an IDR
        assert all(hevc_starts_with_idr(k, length_size) is idr_later for k in keys[1:]), path.name


def test_exp_golomb_and_emulation_prevention() -> None:
    assert _two_exp_golomb(bytes([0b1_010_011_0])) == (0, 1)  # ue: "1" -> 0, "010" -> 1
    assert _two_exp_golomb(bytes([0b00111_1_00])) == (6, 0)  # "00111" -> 6
    assert _two_exp_golomb(bytes([0b00111_000, 0b1_000_0000])) == (6, 7)
    assert _two_exp_golomb(b"\x00\x00") is None  # runs out of bits
    # An H.264 B-slice header whose first bytes hold an emulation-prevention byte (00 00 03).
    nal = bytes([0x01]) + b"\x00\x00\x03\x01"
    assert h264_slice_kinds(b"\x00\x00\x01" + nal, None) == set()  # first_mb too long to read: no kind
    b_slice = bytes([0x01, 0b1_010_0000])  # first_mb 0 ("1"), slice_type 1, B ("010")
    assert h264_slice_kinds(b"\x00\x00\x00\x01" + b_slice, None) == {H264_B_SLICE}
    assert h264_slice_kinds(len(b_slice).to_bytes(4, "big") + b_slice, 4) == {H264_B_SLICE}


def test_malformed_packets_give_nothing_rather_than_fail() -> None:
    for junk in (b"", b"\x00", b"\x00\x00\x01", b"\xff" * 40, b"\x00\x00\x00\x09\x41", b"\x00\x00\x01\x65"):
        for length_size in (None, 4):
            assert isinstance(h264_slice_kinds(junk, length_size), set)
            assert isinstance(h264_starts_with_idr(junk, length_size), bool)
            assert isinstance(hevc_starts_with_idr(junk, length_size), bool)
            assert all(len(n) <= 32 for n in nal_units(junk, length_size))
    assert nal_length_size(None, "h264") is None and nal_length_size(b"\x00\x00\x00\x01\x67", "h264") is None
