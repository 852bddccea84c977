"""HMDB51's protocol: a model per official split, each evaluated on its split's test list, and the mean
over the three splits (the paper's Sec. IV-A) - on a tiny HMDB51-shaped folder of real video files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.cli import main as hfnet_main
from hfnet_core.config import DataSection
from hfnet_core.data.loading import build_dataset
from hfnet_core.data.video import write_video
from hfnet_core.evaluate import evaluate_splits
from hfnet_core.model import build_model

CLASSES = ["brush_hair", "chew"]
#: split -> test clips per class (the rest train): v0..v3 per class
TEST = {1: ["v0"], 2: ["v1", "v2"], 3: ["v3"]}


@pytest.fixture()
def hmdb(tmp_path: Path) -> tuple[Path, Path]:
    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    for c, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for k in range(4):
            level = 40 + 120 * c + 10 * k
            write_video(root / cls / f"{cls}_v{k}.avi", np.full((6, 32, 32, 3), level, np.uint8), codec="mpeg4")
        for split, test in TEST.items():
            rows = [f"{cls}_v{k}.avi {2 if f'v{k}' in test else 1} " for k in range(4)]
            (splits / f"{cls}_test_split{split}.txt").write_text("\n".join(rows) + "\n")
    (root / "category.txt").write_text("\n".join(CLASSES) + "\n")
    return root, splits


def checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model("tsn_bninception_demo", num_classes=2, num_segments=2, input_size=32)
    save_checkpoint(path, model, CLASSES)
    return path


def test_each_split_on_its_own_test_list_and_the_mean(hmdb, tmp_path):
    root, splits = hmdb
    ckpts = [checkpoint(tmp_path / f"split{i}.safetensors", i) for i in (1, 2, 3)]
    result = evaluate_splits(ckpts, "video-folder", str(root), str(splits))
    assert [r["split"] for r in result["splits"]] == [1, 2, 3]
    assert [r["num_clips"] for r in result["splits"]] == [2 * len(TEST[i]) for i in (1, 2, 3)]
    assert [Path(r["checkpoint"]).name for r in result["splits"]] == [c.name for c in ckpts]
    assert result["mean_top1"] == pytest.approx(np.mean([r["top1"] for r in result["splits"]]))
    assert not result["same_checkpoint"]
    with pytest.raises(ValueError, match="one checkpoint per split"):
        evaluate_splits(ckpts[:2], "video-folder", str(root), str(splits))


def test_training_data_follows_split_index(hmdb):
    root, splits = hmdb
    cfg = build_model("tsn_bninception_demo", num_classes=2, num_segments=2, input_size=32).config
    for split, test in TEST.items():
        data = DataSection(dataset="video-folder", root=str(root), train_list=str(splits), val_list=str(splits),
                           split_index=split, augment=False)
        train = build_dataset(data, "train", cfg, train=True)
        held_out = build_dataset(data, "test", cfg, train=False)
        assert sorted(Path(p).stem.split("_")[-1] for p, _, _ in held_out.samples) == sorted(test * 2)
        assert not {p for p, _, _ in train.samples} & {p for p, _, _ in held_out.samples}


def test_cli_reports_each_split_and_the_mean(hmdb, tmp_path, capsys):
    root, splits = hmdb
    ckpt = checkpoint(tmp_path / "one.safetensors", 0)
    rc = hfnet_main(["eval", str(ckpt), "--dataset", "video-folder", "--root", str(root), "--list", str(splits),
                     "--splits", "1,2,3"])
    out = capsys.readouterr().out
    assert rc == 0 and "split 3: top-1" in out and "mean over splits [1, 2, 3]" in out and "not the protocol" in out
    saved = json.loads((tmp_path / "one.splits.json").read_text())
    assert saved["same_checkpoint"] and len(saved["splits"]) == 3


def test_runs_saved_before_the_new_data_fields_still_resume():
    from hfnet_core.config import TrainConfig
    from hfnet_core.train import _config_differences

    now = TrainConfig().to_dict()
    saved = TrainConfig().to_dict()
    del saved["data"]["split_index"], saved["data"]["synth_view"]  # a run from before these fields
    assert _config_differences(saved, now, ("model", "data", "optim")) == []
    now["data"]["split_index"] = 2
    assert _config_differences(saved, now, ("data",)) == ["data.split_index: saved 1, now 2"]
