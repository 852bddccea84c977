"""hfnet eval: metrics on hand-made logits (exact values), within-pair accuracy, eval bundle round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hfnet_core.checkpoint import file_sha256, save_checkpoint
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.evaluate import cli_main, evaluate_model
from hfnet_core.metrics import classification_metrics, format_table, pair_accuracies, topk_correct
from hfnet_core.model import build_model


def test_metrics_on_hand_made_logits():
    # 6 clips, 3 classes (+ one unknown label, ignored). Predictions: 0, 1, 1, 2, 0, 2.
    logits = np.array([
        [5.0, 1.0, 0.0],
        [0.0, 3.0, 2.0],  # label 0: wrong; second choice 2, third 0
        [1.0, 4.0, 0.0],
        [0.0, 1.0, 2.0],  # label 1: wrong; second 1
        [2.0, 0.0, 1.0],  # label 2: wrong; second 2
        [0.0, 0.0, 9.0],
        [9.0, 0.0, 0.0],  # unknown label -1
    ])
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    m = classification_metrics(logits, labels, ["a", "b", "c"])
    assert m["num_clips"] == 6
    assert m["top1"] == pytest.approx(3 / 6)
    assert m["top5"] == 1.0  # k is capped at the class count
    assert topk_correct(logits[:6], labels[:6], 2).tolist() == [True, False, True, True, True, True]
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [1, 0, 1]]
    acc = [r["accuracy"] for r in m["per_class"]]
    prec = [r["precision"] for r in m["per_class"]]
    assert acc == [0.5, 0.5, 0.5] and prec == [0.5, 0.5, 0.5]
    assert m["macro_precision"] == pytest.approx(0.5) and m["macro_recall"] == pytest.approx(0.5)
    # A class that never occurs and is never predicted stays out of the macro averages; one that is
    # predicted but never right has precision 0.
    m2 = classification_metrics(np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0]]), np.array([0, 1, 1]))
    assert m2["per_class"][3]["accuracy"] is None and m2["per_class"][3]["precision"] is None
    assert m2["macro_precision"] == pytest.approx((0.5 + 1.0) / 2)
    assert m2["macro_recall"] == pytest.approx((1.0 + 0.5) / 2)
    assert "top-1 50.00 %" in format_table(m)


def test_pair_accuracies():
    pairs = [(0, 1), (2, 3)]
    labels = np.array([0, 1, 2, 3, 4, 0])
    preds = np.array([1, 1, 2, 0, 4, 0])  # pair right: 0->1 (yes), 1 (yes), 2 (yes), 3->0 (no), 0 (yes)
    r = pair_accuracies(labels, preds, pairs)
    assert r["paired_clips"] == 5
    assert r["pair_merged_accuracy"] == pytest.approx(4 / 5)
    assert r["within_pair_accuracy"] == pytest.approx(3 / 4)
    assert r["paired_accuracy"] == pytest.approx(3 / 5)


def _tiny_model():
    torch.manual_seed(0)
    return build_model("hf_tsn_bninception_demo", num_classes=16, width_mult=0.125, input_size=32, num_segments=2)


def test_eval_bundle_round_trip(tmp_path):
    from hfnet_core.data.synthetic import REVERSED_PAIRS, SYNTH_CLASSES, SynthSomethingDataset

    model = _tiny_model().eval()
    ds = SynthSomethingDataset("test", 1, num_frames=2, size=32)
    metrics, bundle = evaluate_model(model, ds, metadata={"dataset": "synth", "split": "test"},
                                     reversed_pairs=REVERSED_PAIRS, batch_size=5)
    assert bundle.logits.shape == (16, 16) and bundle.features.shape == (16, model.feature_dim)
    assert bundle.clip_ids[3] == "synth/test/000003" and bundle.labels.tolist() == list(range(16))
    with torch.no_grad():
        x = torch.stack([ds[i]["frames"] for i in range(4)])
        out = model.inspect(x)
    np.testing.assert_allclose(bundle.logits[:4], out.logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bundle.features[:4], out.pooled_features.numpy(), rtol=1e-4, atol=1e-5)
    assert metrics["top1"] == pytest.approx(bundle.accuracy) and "within_pair_accuracy" in metrics
    assert bundle.class_names == SYNTH_CLASSES and bundle.metadata["num_clips"] == 16
    bundle.save(tmp_path / "b.npz")
    back = EvalBundle.load(tmp_path / "b.npz")
    assert back.clip_ids == bundle.clip_ids and back.paths == bundle.paths and back.metadata == bundle.metadata
    np.testing.assert_array_equal(back.logits, bundle.logits)
    np.testing.assert_array_equal(back.features, bundle.features)
    np.testing.assert_array_equal(back.labels, bundle.labels)


def test_eval_cli_writes_metrics_and_bundle(tmp_path, capsys):
    from hfnet_core.data.synthetic import SYNTH_CLASSES

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, _tiny_model(), SYNTH_CLASSES)
    assert cli_main([str(ckpt), "--split", "test", "--synth-per-class", "1"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "within-pair" in out
    metrics = json.loads((tmp_path / "m.test.json").read_text())
    bundle = EvalBundle.load(tmp_path / "m.test.npz")
    assert metrics["num_clips"] == len(bundle.clip_ids) == 16
    assert bundle.metadata["checkpoint_sha256"] == file_sha256(ckpt)
    assert bundle.metadata["dataset"] == "synth" and bundle.metadata["split"] == "test"
    assert len(metrics["confusion_matrix"]) == 16 and len(metrics["per_class"]) == 16
    assert cli_main([str(tmp_path / "missing.safetensors")]) == 1


def test_evaluate_model_accepts_a_loader_of_the_data_module(tmp_path):
    from torch.utils.data import DataLoader

    from hfnet_core.data.loading import collate_batch
    from hfnet_core.data.synthetic import SynthSomethingDataset

    ds = SynthSomethingDataset("val", 1, num_frames=2, size=32)
    model = _tiny_model()
    m1, b1 = evaluate_model(model, ds, batch_size=16)
    m2, b2 = evaluate_model(model, DataLoader(ds, batch_size=4, collate_fn=collate_batch))
    np.testing.assert_allclose(b1.logits, b2.logits, rtol=1e-5, atol=1e-5)
    assert b2.clip_ids == b1.clip_ids and m1["top1"] == m2["top1"] and b2.class_names == b1.class_names
