"""``hfnet predict`` on the shipped demo pair and real mp4 files: top-k, agreement, true labels, --reverse."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hfnet_core.analysis.true_labels import find_true_label, load_labels_file, reversed_label
from hfnet_core.cli import main
from hfnet_core.data.synthetic import REVERSED_PAIRS, SYNTH_CLASSES
from hfnet_core.data.video import sample_indices, write_video
from hfnet_core.errors import ConfigError, DatasetError
from hfnet_core.predict import predict_clip, split_arguments

ROOT = Path(__file__).resolve().parents[1]
HF = str(ROOT / "checkpoints" / "hf_tsn_demo.safetensors")
TSN = str(ROOT / "checkpoints" / "tsn_demo.safetensors")
SAMPLES = ROOT / "checkpoints" / "samples"
LEFT = SAMPLES / "00_moving_sth_from_left_to_right.mp4"
PARTNER = {**{a: b for a, b in REVERSED_PAIRS}, **{b: a for a, b in REVERSED_PAIRS}, 14: 14, 15: 15}


def _json(tmp_path, *args) -> dict:
    out = tmp_path / "p.json"
    assert main(["predict", *map(str, args), "--json", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_reverse_json_tsn_is_order_blind(tmp_path):
    doc = _json(tmp_path, HF, TSN, LEFT, "--reverse", "--top-k", "3")
    assert doc["format"] == "hfnet-predictions" and [m["name"] for m in doc["models"]] == ["hf_tsn_demo", "tsn_demo"]
    assert doc["settings"]["reverse"] is True and doc["settings"]["top_k"] == 3
    fwd, rev = doc["records"]
    assert (fwd["direction"], rev["direction"]) == ("forward", "reversed")
    assert fwd["true_label"] == SYNTH_CLASSES[0] and rev["true_label"] == SYNTH_CLASSES[1]
    assert rev["true_label_source"] == "reversed-pair map"
    tsn_f, tsn_r = fwd["models"][1], rev["models"][1]
    np.testing.assert_allclose(tsn_f["logits"], tsn_r["logits"], atol=1e-5)  # TSN cannot see order
    hf_f, hf_r = fwd["models"][0], rev["models"][0]
    assert np.abs(np.subtract(hf_f["logits"], hf_r["logits"])).max() > 1.0  # HF can
    assert hf_f["correct"] is True and hf_r["correct"] is True  # the demo HF-TSN gets both right
    assert tsn_f["top1"] == tsn_r["top1"]
    rc = doc["reversal"][str(LEFT)]
    assert rc["tsn_demo"]["max_abs_logit_diff"] < 1e-5 and not rc["tsn_demo"]["top1_changed"]
    assert rc["hf_tsn_demo"]["top1_changed"]
    # the reversed run sees the same frames in the opposite order
    assert rev["frames_seen"]["tsn_demo"] == fwd["frames_seen"]["tsn_demo"][::-1]
    assert fwd["frames_seen"]["tsn_demo"] == list(sample_indices(16, 8, "eval"))
    for rec in doc["records"]:  # agreement recomputed from the records themselves
        tops = [m["top1"] for m in rec["models"]]
        assert rec["agreement"]["top1_all_agree"] == (tops[0] == tops[1])
        overlap = len({t["class"] for t in rec["models"][0]["top_k"]} & {t["class"] for t in rec["models"][1]["top_k"]})
        assert rec["agreement"]["pairs"][0]["topk_overlap"] == overlap
        for m in rec["models"]:
            probs = [t["prob"] for t in m["top_k"]]
            assert probs == sorted(probs, reverse=True) and len(probs) == 3
            assert m["correct"] == (m["top1"] == rec["true_label"])


def test_reversed_labels_of_every_sample(tmp_path):
    doc = _json(tmp_path, HF, SAMPLES, "--reverse", "--top-k", "1")
    assert doc["counts"] == {"clips": 11, "records": 22, "skipped": 0}
    for fwd, rev in zip(doc["records"][::2], doc["records"][1::2]):
        assert fwd["clip"] == rev["clip"]
        c = SYNTH_CLASSES.index(fwd["true_label"])
        assert rev["true_label"] == SYNTH_CLASSES[PARTNER[c]]
    assert [r["clip"] for r in doc["records"][::2]] == sorted(str(p) for p in SAMPLES.glob("*.mp4"))


def test_folder_with_bad_files(tmp_path, capsys):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(LEFT, folder / "a.mp4")
    (folder / "b_bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)  # truncated mp4
    (folder / "notes.txt").write_text("not a clip")  # not a video: never looked at
    frames = np.random.default_rng(0).integers(0, 255, (20, 96, 128, 3), dtype=np.uint8)
    write_video(folder / "sub" / "c.mp4", frames, fps=10)  # 20 frames, 4:3: resized + centre-cropped
    out = tmp_path / "p.csv"
    assert main(["predict", HF, TSN, str(folder), "--csv", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped ") == 1 and "b_bad.mp4" in err and "truncated" in err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 2 * 2 * 5  # 2 clips x 2 models x top-5
    assert sorted({Path(r["clip"]).name for r in rows}) == ["a.mp4", "c.mp4"]
    a_rows = [r for r in rows if r["clip"].endswith("a.mp4")]
    assert {r["true_label"] for r in a_rows} == {""}  # renamed copy, no manifest: label unknown
    res = predict_clip([TSN], folder / "sub" / "c.mp4", k=2)
    assert res.records[0]["frames_seen"]["tsn_demo"] == list(sample_indices(20, 8, "eval"))


def test_nothing_predicted_fails(tmp_path, capsys):
    (tmp_path / "x.mp4").write_bytes(b"garbage")
    assert main(["predict", TSN, str(tmp_path / "x.mp4"), str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert "skipped" in err and "no such file or folder" in err
    assert "nothing could be predicted: 2 clips skipped" in err and "Traceback" not in err


def test_table_output(capsys):
    assert main(["predict", HF, TSN, str(LEFT), "--reverse", "--top-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "true: Moving something from left to right - samples.json" in out
    assert "true: Moving something from right to left - reversed-pair map" in out
    assert "✓ hf_tsn_demo" in out and "identical logits" in out and "1 clip predicted" in out


def test_argument_errors(capsys):
    with pytest.raises(ConfigError, match="checkpoints come first"):
        split_arguments([HF, str(LEFT), TSN])
    with pytest.raises(ConfigError, match="no clip"):
        split_arguments([HF, TSN])
    with pytest.raises(ConfigError, match="no checkpoint"):
        split_arguments([str(LEFT)])
    assert main(["predict", str(LEFT), HF]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback
    assert main(["predict", HF, str(LEFT), "--top-k", "0"]) == 2


# --- true labels ------------------------------------------------------------------------------------

def test_true_label_sources(tmp_path):
    classes = list(SYNTH_CLASSES)
    assert find_true_label(LEFT, classes) == (SYNTH_CLASSES[0], "samples.json")
    named = tmp_path / "12_squeezing_sth.mp4"
    shutil.copy(LEFT, named)  # the name wins when nothing else says otherwise
    assert find_true_label(named, classes) == ("Squeezing something", "file name")
    cls_dir = tmp_path / "videos" / "test" / "Dropping something"
    cls_dir.mkdir(parents=True)
    shutil.copy(LEFT, cls_dir / "000010.mp4")
    assert find_true_label(cls_dir / "000010.mp4", classes) == ("Dropping something", "class folder")
    # Something-v1 layout (what `hfnet synth` writes): frames/<split>/<id>/00001.jpg + list + categories
    root = tmp_path / "ds"
    (root / "frames" / "test" / "000003").mkdir(parents=True)
    (root / "category.txt").write_text("\n".join(classes) + "\n")
    (root / "test_videofolder.txt").write_text("test/000003 8 9\n")
    assert find_true_label(root / "frames" / "test" / "000003", classes) == ("Uncovering something",
                                                                              "Something-v1 list")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n12_squeezing_sth.mp4,Shaking something\nother.mp4,3\n")
    table = load_labels_file(labels)
    assert find_true_label(named, classes, table) == ("Shaking something", "labels file")
    assert find_true_label(tmp_path / "other.mp4", classes, table) == (SYNTH_CLASSES[3], "labels file")
    assert find_true_label(tmp_path / "clip.mp4", classes) == (None, None)
    bad = tmp_path / "bad.txt"
    bad.write_text("no separator here\n")
    with pytest.raises(DatasetError, match="bad.txt:1"):
        load_labels_file(bad)


def test_labels_option(tmp_path):
    clip = tmp_path / "mine.mp4"
    shutil.copy(LEFT, clip)
    labels = tmp_path / "l.tsv"
    labels.write_text("mine.mp4\tMoving something from left to right\n")
    doc = _json(tmp_path, TSN, clip, "--labels", labels, "--reverse", "--top-k", "1")
    assert doc["records"][0]["true_label_source"] == "labels file"
    assert doc["records"][1]["true_label"] == "Moving something from right to left"


def test_reversed_label_map():
    for a, b in REVERSED_PAIRS:
        assert reversed_label(SYNTH_CLASSES[a]) == (SYNTH_CLASSES[b], "reversed-pair map")
        assert reversed_label(SYNTH_CLASSES[b])[0] == SYNTH_CLASSES[a]
    assert reversed_label("Holding something still")[0] == "Holding something still"
    assert reversed_label("moving_sth_from_left_to_right")[0] == "Moving something from right to left"
    assert reversed_label("Playing guitar") == (None, None) and reversed_label(None) == (None, None)


def test_something_v1_frame_folders(tmp_path):
    """A Something-v1 tree (what `hfnet synth` writes): every frame folder is a clip, labelled by the list."""
    from PIL import Image

    from hfnet_core.data.video import read_frames

    frames = read_frames(LEFT, None)
    root = tmp_path / "ds"
    for name in ("000000", "000001"):
        d = root / "frames" / "test" / name
        d.mkdir(parents=True)
        clip = frames if name == "000000" else frames[::-1]
        for t, f in enumerate(clip):
            Image.fromarray(f).save(d / f"{t + 1:05d}.jpg", quality=95)
    (root / "category.txt").write_text("\n".join(SYNTH_CLASSES) + "\n")
    (root / "test_videofolder.txt").write_text("test/000000 16 0\ntest/000001 16 1\n")
    res = predict_clip([HF], root, k=1)  # the folder: both frame folders, sorted
    assert [r["clip"] for r in res.records] == [str(root / "frames" / "test" / n) for n in ("000000", "000001")]
    assert [r["true_label"] for r in res.records] == SYNTH_CLASSES[:2]
    assert {r["true_label_source"] for r in res.records} == {"Something-v1 list"}
    assert all(r["models"][0]["correct"] for r in res.records) and res.records[0]["clip_info"]["frames"] == 16
