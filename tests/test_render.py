"""``hfnet render``: frames with gate overlays and both models' top-3, written as MP4 (H.264) and GIF."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from hfnet_core.analysis.gates import gate_overlay, most_local_layer
from hfnet_core.cli import main
from hfnet_core.data.video import read_frames
from hfnet_core.errors import ConfigError
from hfnet_core.predict import load_models, model_view, predict_view
from hfnet_core.render import _resize, render_clip, render_frames

ROOT = Path(__file__).resolve().parents[1]
HF = str(ROOT / "checkpoints" / "hf_tsn_demo.safetensors")
TSN = str(ROOT / "checkpoints" / "tsn_demo.safetensors")
LEFT = ROOT / "checkpoints" / "samples" / "00_moving_sth_from_left_to_right.mp4"


@pytest.fixture(scope="module")
def models():
    return load_models([HF, TSN], device="cpu")


@pytest.fixture(scope="module")
def frames():
    return read_frames(LEFT, None)


def test_mp4_and_gif_decode(tmp_path, capsys):
    mp4, gif = tmp_path / "r.mp4", tmp_path / "r.gif"
    assert main(["render", HF, TSN, str(LEFT), "--out", str(mp4)]) == 0
    assert "8 frames" in capsys.readouterr().err
    info = render_clip([HF, TSN], LEFT, gif, reverse=True, fps=4)
    for path in (mp4, gif):
        got = read_frames(path, None, max_side=None)
        assert got.shape == (8, info["height"], info["width"], 3)  # one frame per sampled frame
    assert info["height"] % 2 == 0 and info["width"] % 2 == 0 and info["width"] >= 2 * 224
    with av.open(str(mp4)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert float(s.average_rate) == pytest.approx(2.0)
    assert info["direction"] == "reversed" and info["true_label"] == "Moving something from right to left"


def test_overlay_panel_is_exact(models, frames):
    """The right panel of frame t is gate_overlay(frame t, G_t) of the chosen layer, scaled up."""
    out, info = render_frames(models, frames, layer="3a", clip_name="left.mp4")
    assert info["layer"] == "inception_3a" and info["overlay_model"] == "hf_tsn_demo"
    assert info["locality"]["behaviour"] == "fixed_differencing"
    _, view = model_view(models["hf_tsn_demo"], frames)
    gates = predict_view(models["hf_tsn_demo"], view).gates["inception_3a"]
    expected = gate_overlay(view, gates)
    side, pad, header = 224, 8, 62
    for t in (0, 7):
        right = out[t, header : header + side, 2 * pad + side : 2 * pad + 2 * side]
        np.testing.assert_array_equal(right, _resize(expected[t], side))
        left = out[t, header : header + side, pad : pad + side]
        np.testing.assert_array_equal(left, _resize(view[t], side))
    r, g, b = (out[0, header : header + side, 2 * pad + side : 2 * pad + 2 * side].astype(int)[..., c].mean()
               for c in range(3))
    assert r > b + 40  # 3a differences everywhere: red
    last = out[7, header : header + side, 2 * pad + side : 2 * pad + 2 * side].astype(int)
    assert np.abs(last[..., 0] - last[..., 2]).max() <= 1  # last frame: no successor, grey


def test_default_layer_and_captions(models, frames):
    out, info = render_frames(models, frames)
    gates = predict_view(models["hf_tsn_demo"], model_view(models["hf_tsn_demo"], frames)[1]).gates
    assert info["layer"] == most_local_layer(gates) and info["locality"]["behaviour"] == "local"
    assert [n for n, _ in info["top3"]["hf_tsn_demo"]][0] == "Moving something from left to right"
    assert len(info["top3"]["tsn_demo"]) == 3 and out.shape[0] == 8


def test_tsn_alone_has_no_overlay(models, frames):
    out, info = render_frames({"tsn_demo": models["tsn_demo"]}, frames)
    assert info["layer"] is None and info["overlay_model"] is None
    side, pad, header = 224, 8, 62
    left = out[0, header : header + side, pad : pad + side]
    right = out[0, header : header + side, 2 * pad + side : 2 * pad + 2 * side]
    np.testing.assert_array_equal(left, right)


def test_render_errors(tmp_path, capsys):
    with pytest.raises(ConfigError, match="3a, 3b"):
        render_clip([HF], LEFT, tmp_path / "x.mp4", layer="9z")
    with pytest.raises(ConfigError, match=".mp4"):
        render_clip([HF], LEFT, tmp_path / "x.avi")
    assert main(["render", HF, TSN, HF, str(LEFT), "--out", str(tmp_path / "y.mp4")]) == 2
    assert "one or two models" in capsys.readouterr().err
    assert main(["render", HF, str(LEFT), str(LEFT), "--out", str(tmp_path / "y.mp4")]) == 2
    assert not list(tmp_path.iterdir())  # nothing half-written
