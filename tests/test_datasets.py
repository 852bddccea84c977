"""Datasets on real files: Something-v1 folders, class folders + HMDB51 splits, CSV lists, skipping bad clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hfnet_core.data.datasets import (
    CsvVideoDataset,
    SomethingV1Dataset,
    VideoFolderDataset,
    hmdb51_split,
    read_skip_log,
)
from hfnet_core.data.formats import open_dataset
from hfnet_core.data.loading import GuardedDataset, collate_batch
from hfnet_core.data.transforms import eval_transform
from hfnet_core.data.video import write_video
from hfnet_core.input_convention import InputConvention


def level_clip(n: int, level0: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frame t has grey level level0 + 8t: sampled frame indices can be read back."""
    return np.stack([np.full((h, w, 3), level0 + 8 * t, np.uint8) for t in range(n)])


@pytest.fixture()
def something(tmp_path: Path) -> Path:
    root = tmp_path / "something"
    lines = []
    for i, (n, label) in enumerate([(16, 0), (9, 1), (4, 2)]):
        folder = root / "frames" / f"{100 + i}"
        folder.mkdir(parents=True)
        for t, f in enumerate(level_clip(n, 10 * i)):
            Image.fromarray(f).save(folder / f"{t + 1:05d}.png")
        lines.append(f"{100 + i} {n} {label}")
    lines.append("999 8 1")  # listed, but the folder does not exist
    (root / "frames" / "102" / "00002.png").write_bytes(b"not a png")  # a corrupt frame
    (root / "train_videofolder.txt").write_text("\n".join(lines) + "\n")
    (root / "category.txt").write_text("Pushing something\nPulling something\nHolding something\n")
    return root


def test_something_v1_items_and_sampling(something: Path) -> None:
    ds = SomethingV1Dataset(something / "frames", something / "train_videofolder.txt", something / "category.txt",
                            num_segments=8, mode="eval", image_template="{:05d}.png")
    assert len(ds) == 4 and ds.class_names == ["Pushing something", "Pulling something", "Holding something"]
    item = ds[0]
    assert set(item) == {"frames", "label", "clip_id", "path"}
    assert item["frames"].shape == (8, 3, 32, 48) and item["frames"].dtype == torch.float32
    assert item["label"] == 0 and item["clip_id"] == "100" and item["path"] == str(something / "frames" / "100")
    # Eval = segment centres of 16 frames: 1, 3, ..., 15; BNInception: BGR minus mean, grey -> every channel.
    levels = (item["frames"][:, 0, 0, 0] + 104).round().to(torch.int64).tolist()
    assert levels == [8 * t for t in (1, 3, 5, 7, 9, 11, 13, 15)]
    torch.manual_seed(0)
    train = SomethingV1Dataset(something / "frames", something / "train_videofolder.txt", something / "category.txt",
                               num_segments=4, mode="train", image_template="{:05d}.png")
    draws = {tuple((train[0]["frames"][:, 0, 0, 0] + 104).round().int().tolist()) for _ in range(20)}
    assert len(draws) > 1  # random offsets
    for d in draws:
        idx = [v // 8 for v in d]
        assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(idx))  # one frame per TSN segment


def test_unreadable_clips_are_skipped_named_and_counted(something: Path, tmp_path: Path) -> None:
    log = tmp_path / "run" / "skipped.tsv"
    ds = SomethingV1Dataset(something / "frames", something / "train_videofolder.txt", something / "category.txt",
                            num_segments=8, mode="eval", skip_log=log, image_template="{:05d}.png")
    with pytest.warns(UserWarning, match="skipping unreadable clip"):
        items = [ds[i] for i in range(len(ds))]
    assert items[2] is None and items[3] is None and items[0] is not None and items[1] is not None
    paths = [p for p, _ in ds.skipped]
    assert any(p.endswith("00002.png") for p in paths) and any("999" in p for p in paths)
    assert all(reason for _, reason in ds.skipped)
    assert read_skip_log(log) == ds.skipped
    batch = collate_batch(items)
    assert batch["frames"].shape == (2, 8, 3, 32, 48) and batch["label"].tolist() == [0, 1]
    assert batch["clip_id"] == ["100", "101"] and len(batch["skipped"]) == 2 and len(batch["path"]) == 2
    empty = collate_batch([None, None])
    assert len(empty["skipped"]) == 2 and empty["frames"] is None and empty["clip_id"] == []
    # Through the guard, each skipped clip is named by the file that failed in that very call.
    guarded = [GuardedDataset(ds)[i] for i in range(len(ds))]
    named = [g["skipped"] for g in guarded if "skipped" in g]
    assert len(named) == 2 and len(set(named)) == 2
    assert any(n.endswith("00002.png") for n in named) and any("999" in n for n in named)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_skips_reach_the_main_process_from_dataloader_workers(something: Path, tmp_path: Path) -> None:
    log = tmp_path / "skipped.tsv"
    ds = SomethingV1Dataset(something / "frames", something / "train_videofolder.txt", something / "category.txt",
                            num_segments=8, mode="eval", skip_log=log, image_template="{:05d}.png")
    loader = torch.utils.data.DataLoader(GuardedDataset(ds), batch_size=4, num_workers=1, collate_fn=collate_batch)
    batches = list(loader)
    names = [name for b in batches for name, _ in b["skipped"]]
    assert len(names) == 2 and len(set(names)) == 2 and ds.skipped == []  # the worker had its own copy
    assert len(read_skip_log(log)) == 2


@pytest.fixture()
def hmdb(tmp_path: Path) -> tuple[Path, Path]:
    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    for c, cls in enumerate(["brush_hair", "cartwheel", "chew"]):
        (root / cls).mkdir(parents=True)
        rows = []
        for k in range(3):
            name = f"{cls}_v{k}.avi"
            write_video(root / cls / name, level_clip(10, 20 * c + 5 * k), codec="mpeg4")
            rows.append(f"{name} {[1, 2, 0][k]} ")
        rows.append(f"{cls}_gone.avi 1 ")  # in the split file, not on disk
        (splits / f"{cls}_test_split1.txt").write_text("\n".join(rows) + "\n")
        (splits / f"{cls}_test_split2.txt").write_text(f"{cls}_v0.avi 2 \n{cls}_v1.avi 1 \n{cls}_v2.avi 1 \n")
    return root, splits


def test_hmdb51_split_files(hmdb: tuple[Path, Path]) -> None:
    _, splits = hmdb
    train = hmdb51_split(splits, 1, "train")
    assert train == {"brush_hair_v0.avi": "brush_hair", "brush_hair_gone.avi": "brush_hair",
                     "cartwheel_v0.avi": "cartwheel", "cartwheel_gone.avi": "cartwheel",
                     "chew_v0.avi": "chew", "chew_gone.avi": "chew"}
    assert set(hmdb51_split(splits, 1, "test")) == {"brush_hair_v1.avi", "cartwheel_v1.avi", "chew_v1.avi"}
    assert set(hmdb51_split(splits, 2, "test")) == {"brush_hair_v0.avi", "cartwheel_v0.avi", "chew_v0.avi"}
    with pytest.raises(ValueError):
        hmdb51_split(splits, 4, "train")
    with pytest.raises(FileNotFoundError):
        hmdb51_split(splits, 3, "train")


def test_video_folder_dataset(hmdb: tuple[Path, Path]) -> None:
    root, splits = hmdb
    full = VideoFolderDataset(root, num_segments=4, mode="eval", transform=eval_transform(32))
    assert full.class_names == ["brush_hair", "cartwheel", "chew"] and len(full) == 9
    item = full[4]
    assert item["clip_id"] == "cartwheel/cartwheel_v1.avi" and item["label"] == 1
    assert item["frames"].shape == (4, 3, 32, 32)
    with pytest.warns(UserWarning, match="missing"):
        train = VideoFolderDataset(root, num_segments=4, include=hmdb51_split(splits, 1, "train"))
    assert [Path(p).name for p, _, _ in train.samples] == ["brush_hair_v0.avi", "cartwheel_v0.avi", "chew_v0.avi"]
    assert train.labels == [0, 1, 2]
    missing = sorted(Path(p).name for p, _ in train.skipped)
    assert missing == ["brush_hair_gone.avi", "cartwheel_gone.avi", "chew_gone.avi"]
    ordered = VideoFolderDataset(root, num_segments=4, class_names=["chew", "cartwheel", "brush_hair", "fencing"])
    assert ordered.labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="not in class_names"):
        VideoFolderDataset(root, num_segments=4, class_names=["chew"])


def test_csv_dataset_names_indices_and_errors(hmdb: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = hmdb
    by_name = tmp_path / "by_name.csv"
    by_name.write_text(f"path,label\n{root}/chew/chew_v0.avi,chew\n{root}/cartwheel/cartwheel_v2.avi,cartwheel\n")
    ds = CsvVideoDataset(by_name, num_segments=4)
    assert ds.class_names == ["cartwheel", "chew"] and ds.labels == [1, 0]
    assert ds[1]["frames"].shape == (4, 3, 32, 48)
    rel = root / "list.csv"  # relative paths resolve against the CSV's folder; no header
    rel.write_text("chew/chew_v1.avi,2\nbrush_hair/brush_hair_v0.avi,0\n")
    ds = CsvVideoDataset(rel, num_segments=2, class_names=["brush_hair", "cartwheel", "chew"])
    assert ds.labels == [2, 0] and ds[0]["path"] == str(root / "chew" / "chew_v1.avi")
    idx_only = tmp_path / "idx.csv"
    idx_only.write_text(f"{root}/chew/chew_v1.avi,2\n")
    assert CsvVideoDataset(idx_only, num_segments=2).class_names == ["0", "1", "2"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{root}/chew/chew_v1.avi,juggling\n")
    with pytest.raises(ValueError, match="juggling"):
        CsvVideoDataset(bad, num_segments=2, class_names=["chew"])


def test_build_dataset_reads_the_synth_layout(tmp_path: Path) -> None:
    from hfnet_core.data.synthetic import SYNTH_CLASSES, write_dataset

    write_dataset(tmp_path, {"train": 1, "test": 1}, seed=1, size=32, splits=("train", "test"))
    conv = InputConvention.imagenet_rgb()
    s = open_dataset("something-v1", tmp_path, "test", num_frames=8, train=False, convention=conv)
    v = open_dataset("video-folder", tmp_path / "videos", "test", num_frames=8)
    c = open_dataset("csv", tmp_path, "train", num_frames=4, train=True)
    assert isinstance(s, SomethingV1Dataset) and isinstance(v, VideoFolderDataset) and isinstance(c, CsvVideoDataset)
    for ds in (s, v, c):
        assert ds.class_names == SYNTH_CLASSES and len(ds) == len(SYNTH_CLASSES)
        assert sorted(ds.labels) == list(range(len(SYNTH_CLASSES)))
    assert s[3]["frames"].abs().max() < 5  # ImageNet convention: normalised, not 0-255
    assert c.mode == "train" and s.mode == "eval" and c[0]["frames"].shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("kinetics", tmp_path, "train")
