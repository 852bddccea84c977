"""hfnet train: learning, configuration (file + overrides, saved in checkpoints), unreadable clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfnet_core.checkpoint import load_checkpoint, read_metadata
from hfnet_core.config import ConfigError, TrainConfig, load_config, parse_value
from hfnet_core.train import cli_main, lr_factor, param_groups, build_model_from_config, train

from _train_helpers import tiny_config


def test_loss_decreases_on_a_tiny_overfit(tmp_path):
    cfg = tiny_config(tmp_path / "run", model={"dropout": 0.0}, optim={"lr": 0.02, "schedule": "step",
                      "milestones": [], "weight_decay": 0.0}, train={"epochs": 16, "batch_size": 16, "eval_every": 100})
    result = train(cfg)
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 16 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    assert result.history[-1]["train_top1"] > result.history[0]["train_top1"]
    # Only the last epoch is validated with eval_every=100; best/last checkpoints exist and load.
    assert "val_top1" in result.history[-1] and "val_top1" not in result.history[0]
    for name in ("last.safetensors", "best.safetensors"):
        assert load_checkpoint(tmp_path / "run" / name).config.num_classes == 16


def test_config_file_and_overrides_are_saved_in_the_checkpoint(tmp_path):
    cfg_file = tmp_path / "c.toml"
    base = tiny_config(tmp_path / "run", train={"epochs": 1, "max_steps_per_epoch": 1})
    cfg_file.write_text(
        "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in vals.items() if v is not None)
                  for s, vals in base.to_dict().items()))
    rc = cli_main([str(cfg_file), "--set", "optim.lr=0.02", "--set", "optim.milestones=[3, 5]",
                   "--set", "model.hf_placement=last5", "--epochs", "1"])
    assert rc == 0
    meta = read_metadata(tmp_path / "run" / "last.safetensors")
    saved = meta["training"]["config"]
    assert saved["optim"]["lr"] == 0.02 and saved["optim"]["milestones"] == [3, 5]
    assert saved["model"]["hf_placement"] == "last5" and saved["model"]["width_mult"] == 0.125
    assert [e["where"] for e in meta["model_config"]["temporal"] if e["op"] == "hf"] == ["last5"]
    assert TrainConfig.from_dict(saved).to_dict() == saved  # a run is rebuilt from its checkpoint alone
    assert (tmp_path / "run" / "config.toml").is_file()
    rows = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["epoch"] == 1 and {"train_loss", "val_top1", "val_top5", "lr", "time_s", "skipped"} <= set(rows[0])
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("epoch,lr,train_loss")


def test_config_parsing_and_errors(tmp_path):
    assert TrainConfig().optim.lr == 0.001 and TrainConfig().train.epochs == 60  # the paper's recipe
    assert TrainConfig().optim.milestones == [25, 40] and TrainConfig().train.batch_size == 32
    assert parse_value("0.5") == 0.5 and parse_value("true") is True and parse_value("abc") == "abc"
    cfg = load_config(None, ["optim.lr=1", "model.num_classes=none", "train.out_dir=x/y"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float) and cfg.model.num_classes is None
    y = tmp_path / "c.yaml"
    y.write_text("optim:\n  schedule: cosine\ntrain:\n  epochs: 3\n")
    assert load_config(y).optim.schedule == "cosine" and load_config(y).train.epochs == 3
    with pytest.raises(ConfigError, match="unknown key optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        load_config(None, ["train.epochs=ten"])
    with pytest.raises(ConfigError, match="section"):
        load_config(None, ["lr=1"])


def test_schedules_and_gate_learning_rate():
    cfg = TrainConfig()
    assert lr_factor(cfg, 0) == 1.0 and lr_factor(cfg, 24.9) == 1.0
    assert lr_factor(cfg, 25) == pytest.approx(0.1) and lr_factor(cfg, 45) == pytest.approx(0.01)
    cfg.optim.schedule, cfg.train.epochs = "cosine", 10
    assert lr_factor(cfg, 0) == 1.0 and lr_factor(cfg, 5) == pytest.approx(0.5) and lr_factor(cfg, 10) < 1e-12
    cfg.optim.gate_lr_mult = 0.1
    cfg.model.name = "hf_tsn_bninception_demo"
    _, model = build_model_from_config(cfg, 16)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    assert groups["gate_decay"]["lr_mult"] == 0.1 and groups["decay"]["lr_mult"] == 1.0
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 5e-4
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_unreadable_clip_is_skipped_counted_and_named(tmp_path):
    from hfnet_core.data.synthetic import generate_clip
    from hfnet_core.data.video import write_video

    root = tmp_path / "data"
    rows = ["path,label"]
    for i in range(4):
        write_video(root / f"c{i}.mp4", generate_clip(i % 2, i, num_frames=4, size=32))
        rows.append(f"c{i}.mp4,{['left', 'right'][i % 2]}")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows.append("broken.mp4,left")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    cfg = tiny_config(tmp_path / "run", data={"dataset": "csv", "root": str(root), "val_split": "train"},
                      train={"epochs": 1, "batch_size": 2})
    with pytest.warns(UserWarning):
        result = train(cfg)
    row = result.history[0]
    assert row["skipped"] == 1 and "broken.mp4" in row["skipped_clips"][0]
    assert row["train_clips"] == 4 and row["val_skipped"] == 1
    assert result.class_names == ["left", "right"]
    assert "skipped 1 clips: " in (tmp_path / "run" / "train.log").read_text()
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["skipped"] == 1


def test_pretrained_backbone_initialisation(tmp_path):
    import torch

    from hfnet_core.checkpoint import save_checkpoint
    from hfnet_core.data.synthetic import SYNTH_CLASSES
    from hfnet_core.model import build_model

    torch.manual_seed(123)
    donor = build_model("tsn_bninception_demo", num_classes=16, width_mult=0.125, input_size=32, num_segments=2)
    save_checkpoint(tmp_path / "donor.safetensors", donor, SYNTH_CLASSES)
    cfg = tiny_config(tmp_path / "run", model={"pretrained": str(tmp_path / "donor.safetensors")},
                      optim={"lr": 0.0}, train={"epochs": 1, "max_steps_per_epoch": 1})
    train(cfg)
    got = load_checkpoint(tmp_path / "run" / "last.safetensors").model.state_dict()
    for k, v in donor.base_model.state_dict().items():
        if "running" not in k and "num_batches" not in k:  # BN statistics move even at lr 0
            torch.testing.assert_close(got["base_model." + k], v, msg=k)
    cfg.model.pretrained = str(tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="nope.pth: no such file"):
        train(cfg)
