"""hfnet extract: features for a folder of real mp4 files (PyAV), unreadable files skipped, shards merged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES, generate_clip
from hfnet_core.data.video import write_video
from hfnet_core.extract import cli_main, run_extract
from hfnet_core.model import build_model


def _setup(tmp_path):
    torch.manual_seed(0)
    model = build_model("hf_tsn_bninception_demo", num_classes=16, width_mult=0.125, input_size=32, num_segments=2)
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, model, SYNTH_CLASSES)
    clips = tmp_path / "clips"
    for i in range(3):
        write_video(clips / f"sub{i % 2}" / f"clip{i}.mp4", generate_clip(i, i, num_frames=6, size=48))
    (clips / "sub0" / "zz_broken.mp4").write_bytes(b"garbage, not a video")
    return model, ckpt, clips


def test_extract_folder_of_mp4(tmp_path, capsys):
    model, ckpt, clips = _setup(tmp_path)
    out = tmp_path / "f.npz"
    with pytest.warns(UserWarning, match="zz_broken"):
        assert cli_main([str(ckpt), str(clips), "--out", str(out), "--batch-size", "2"]) == 0
    assert "skipped 1 unreadable clips" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as z:
        assert z["features"].shape == (3, model.feature_dim) and z["logits"].shape == (3, 16)
        assert [str(c) for c in z["clip_ids"]] == ["sub0/clip0.mp4", "sub0/clip2.mp4", "sub1/clip1.mp4"]
        assert len(z["skipped"]) == 1 and "zz_broken.mp4" in str(z["skipped"][0])
        meta = json.loads(str(z["metadata"]))
        assert meta["num_clips"] == 3 and meta["num_skipped"] == 1 and len(meta["checkpoint_sha256"]) == 64
        feats = z["features"]
    # The same features as the model computes on the decoded, centre-cropped clip.
    from hfnet_core.data.datasets import ClipDataset
    from hfnet_core.data.transforms import eval_transform

    ds = ClipDataset([(str(clips / "sub0" / "clip0.mp4"), 0, "x")], ["u"], 2, transform=eval_transform(32),
                     convention=model.input_convention)
    with torch.no_grad():
        ref = model.eval().inspect(ds[0]["frames"][None]).pooled_features[0].numpy()
    np.testing.assert_allclose(feats[0], ref, rtol=1e-4, atol=1e-4)


def test_sharded_extract_merges_in_file_order(tmp_path):
    _, ckpt, clips = _setup(tmp_path)
    with pytest.warns(UserWarning, match="zz_broken"):
        single = run_extract(ckpt, clips, tmp_path / "one.npz")
        # Two "processes" without a process group: rank 1 writes its shard, rank 0 its own, then merges.
        assert run_extract(ckpt, clips, tmp_path / "two.npz", rank=1, world_size=2) is None
        merged = run_extract(ckpt, clips, tmp_path / "two.npz", rank=0, world_size=2)
    with np.load(single, allow_pickle=False) as a, np.load(merged, allow_pickle=False) as b:
        assert a["paths"].tolist() == b["paths"].tolist()
        np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5, atol=1e-6)
        assert len(b["skipped"]) == 1
    assert not list(tmp_path.glob("two.npz.rank*"))
