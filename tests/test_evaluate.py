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
    assert cli_main([str(ckpt), "--split", "test", "--synth-per-class", "1", "--no-project"]) == 0
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


# --- failures: the model's or the data's ---------------------------------------------------------------

class _Flaky(torch.utils.data.Dataset):
    """SynthSomething clips with file names, failing where asked (``fail``: index -> exception)."""

    def __init__(self, inner, fail):
        self.inner, self.fail = inner, fail
        self.class_names = inner.class_names
        self.samples = [(f"/data/clips/{i:05d}.mp4", int(inner[i]["label"])) for i in range(len(inner))]

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if i in self.fail:
            raise self.fail[i]
        item = dict(self.inner[i])
        item["path"] = self.samples[i][0]
        return item


def _checkpoint(tmp_path, name="m"):
    from hfnet_core.data.synthetic import SYNTH_CLASSES

    ckpt = tmp_path / f"{name}.safetensors"
    save_checkpoint(ckpt, _tiny_model(), SYNTH_CLASSES)
    return ckpt


def _no_nan(path) -> dict:
    def refuse(token):
        raise AssertionError(f"{token} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _patch_dataset(monkeypatch, fail):
    import hfnet_core.evaluate as ev

    real = ev.dataset_for_checkpoint
    monkeypatch.setattr(ev, "dataset_for_checkpoint", lambda *a, **k: _Flaky(real(*a, **k), fail))


def test_every_clip_failing_the_same_way_is_the_models_fault(tmp_path, monkeypatch, capsys):
    ckpt = _checkpoint(tmp_path)
    _patch_dataset(monkeypatch, {i: ValueError("clip has 2 frames but the model needs 100000") for i in range(16)})
    assert cli_main([str(ckpt), "--synth-per-class", "1", "--no-project"]) == 1
    err = capsys.readouterr().err
    assert "every one of the 16 clips failed the same way" in err and "configuration" in err
    metrics = _no_nan(tmp_path / "m.test.json")  # written, with null instead of NaN
    assert metrics["top1"] is None and metrics["num_clips"] == 0 and "error" in metrics
    assert any(n.startswith("top1 is null: no clip was evaluated") for n in metrics["notes"])
    assert not (tmp_path / "m.test.npz").exists() and not (tmp_path / "m.test.parts").exists()


def test_a_failing_forward_pass_is_reported_as_the_models_fault(tmp_path, monkeypatch, capsys):
    from hfnet_core.model import VideoClassifier

    ckpt = _checkpoint(tmp_path)

    def broken(self, x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (16x1024 and 512x16)")

    monkeypatch.setattr(VideoClassifier, "inspect", broken)
    assert cli_main([str(ckpt), "--synth-per-class", "1", "--no-project"]) == 1
    err = capsys.readouterr().err
    assert "the model failed on a batch of" in err and "synth/test/000000" in err and "mat1" in err
    assert "error" in _no_nan(tmp_path / "m.test.json")


def test_skip_report_names_each_file_that_failed_and_why(tmp_path, monkeypatch, capsys):
    from hfnet_core.data.video import VideoDecodeError

    ckpt = _checkpoint(tmp_path)
    _patch_dataset(monkeypatch, {3: VideoDecodeError("/data/clips/00003.mp4", "moov atom not found"),
                                 7: OSError("permission denied")})
    assert cli_main([str(ckpt), "--synth-per-class", "1", "--no-project", "--batch-size", "5"]) == 0
    metrics = _no_nan(tmp_path / "m.test.json")
    assert metrics["skipped"] == 2 and metrics["num_clips"] == 14 and metrics["top1"] is not None
    first, second = metrics["skipped_clips"]
    assert first.startswith("/data/clips/00003.mp4: ") and "moov atom" in first
    assert second.startswith("/data/clips/00007.mp4: ") and "permission denied" in second
    assert len(EvalBundle.load(tmp_path / "m.test.npz").clip_ids) == 14
    assert "skipped 2 unreadable clips" in capsys.readouterr().out


def test_undefined_metrics_become_null_with_a_note():
    from hfnet_core.evaluate import json_safe

    safe = json_safe({"top1": float("nan"), "within_pair_accuracy": float("inf"), "per_class": [
        {"accuracy": float("nan")}], "num_clips": 0})
    assert safe["top1"] is None and safe["within_pair_accuracy"] is None and safe["per_class"][0]["accuracy"] is None
    assert len(safe["notes"]) == 2 and json.dumps(safe, allow_nan=False)


# --- at scale: chunks, resume, shards --------------------------------------------------------------------

def test_an_interrupted_eval_resumes_where_it_stopped(tmp_path, monkeypatch):
    from hfnet_core.evaluate import EvalSpec, evaluate_sharded
    from hfnet_core.model import VideoClassifier

    ckpt = _checkpoint(tmp_path)
    spec = EvalSpec(synth_per_class=1)
    whole, _ = evaluate_sharded(ckpt, tmp_path / "once.parts", spec, chunk_size=4, batch_size=3, device="cpu")
    real = VideoClassifier.inspect
    calls = []

    def interrupted(self, x):
        calls.append(len(x))
        if len(calls) == 5:  # chunks of 4 clips in batches of 3, 3 + 1: the 5th batch is chunk 2
            raise KeyboardInterrupt
        return real(self, x)

    monkeypatch.setattr(VideoClassifier, "inspect", interrupted)
    parts = tmp_path / "m.test.parts"
    with pytest.raises(KeyboardInterrupt):
        evaluate_sharded(ckpt, parts, spec, chunk_size=4, batch_size=3, device="cpu")
    assert sorted(p.name for p in parts.glob("chunk-*.npz")) == ["chunk-000000.npz", "chunk-000001.npz"]
    assert not list(parts.glob("*.tmp"))
    calls.clear()
    monkeypatch.setattr(VideoClassifier, "inspect", lambda self, x: calls.append(len(x)) or real(self, x))
    metrics, bundle = evaluate_sharded(ckpt, parts, spec, chunk_size=4, batch_size=3, device="cpu")
    assert sum(calls) == 8  # only the 8 clips of chunks 2 and 3 were run again
    _, one_go = evaluate_sharded(ckpt, tmp_path / "again.parts", spec, chunk_size=16, device="cpu")
    assert bundle.clip_ids == one_go.clip_ids
    np.testing.assert_allclose(bundle.logits, one_go.logits, rtol=1e-5, atol=1e-5)
    assert metrics["top1"] == whole["top1"] and metrics["num_clips"] == 16


def test_partial_results_of_another_evaluation_are_refused_unless_fresh(tmp_path):
    from hfnet_core.evaluate import EvalSpec, EvaluationError, evaluate_sharded

    ckpt = _checkpoint(tmp_path)
    parts = tmp_path / "m.test.parts"
    with pytest.raises(EvaluationError, match="not in"):  # rank 0 alone: rank 1's chunks are missing
        evaluate_sharded(ckpt, parts, EvalSpec(synth_per_class=1), rank=0, world_size=2, chunk_size=4, device="cpu")
    with pytest.raises(EvaluationError, match="another evaluation.*synth_seed"):
        evaluate_sharded(ckpt, parts, EvalSpec(synth_per_class=1, synth_seed=5), chunk_size=4, device="cpu")
    metrics, _ = evaluate_sharded(ckpt, parts, EvalSpec(synth_per_class=1, synth_seed=5), chunk_size=4,
                                  fresh=True, device="cpu")
    assert metrics["metadata"]["synth_seed"] == 5


def test_shards_of_two_ranks_merge_into_the_single_process_result(tmp_path):
    from hfnet_core.evaluate import EvalSpec, EvaluationError, evaluate_sharded

    ckpt = _checkpoint(tmp_path)
    spec = EvalSpec(synth_per_class=1)
    parts = tmp_path / "m.test.parts"
    with pytest.raises(EvaluationError, match="other ranks have not finished"):
        evaluate_sharded(ckpt, parts, spec, rank=0, world_size=2, chunk_size=3, device="cpu")
    assert evaluate_sharded(ckpt, parts, spec, rank=1, world_size=2, chunk_size=3, device="cpu") is None
    assert len(list(parts.glob("chunk-*.npz"))) == 6  # 16 clips in chunks of 3; ranks 0 and 1 alternate
    metrics, bundle = evaluate_sharded(ckpt, parts, spec, rank=0, world_size=2, chunk_size=3, device="cpu")
    single, ref = evaluate_sharded(ckpt, tmp_path / "single.parts", spec, chunk_size=16, device="cpu")
    assert bundle.clip_ids == ref.clip_ids == [f"synth/test/{i:06d}" for i in range(16)]
    np.testing.assert_allclose(bundle.features, ref.features, rtol=1e-5, atol=1e-5)
    assert metrics["top1"] == single["top1"] and bundle.metadata["world_size"] == 2


def test_eval_cli_projects_the_bundle_at_the_end(tmp_path):
    from hfnet_core.analysis.projection_store import ProjectionSpec, load_set

    ckpt = _checkpoint(tmp_path)
    assert cli_main([str(ckpt), "--synth-per-class", "1", "--project-methods", "pca"]) == 0
    ps = load_set(tmp_path / "m.test.npz", ProjectionSpec())
    assert ps is not None and ps.methods == ["pca"] and ps.n == 16


def _eval_rank(rank: int, world: int, port: int, ckpt: str, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    code = cli_main([ckpt, "--synth-per-class", "1", "--chunk-size", "3", "--out-dir", out, "--no-project"])
    if code != 0:
        raise SystemExit(code)


@pytest.mark.slow
def test_eval_under_two_gloo_processes_matches_one(tmp_path):
    """What `torchrun --nproc_per_node 2 -m hfnet_core.cli eval ...` does: shard, barrier, rank 0 merges."""
    import socket

    import torch.multiprocessing as mp

    ckpt = _checkpoint(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_eval_rank, args=(2, port, str(ckpt), str(tmp_path / "two")), nprocs=2, join=True)
    assert cli_main([str(ckpt), "--synth-per-class", "1", "--out-dir", str(tmp_path / "one"), "--no-project"]) == 0
    two, one = EvalBundle.load(tmp_path / "two" / "m.test.npz"), EvalBundle.load(tmp_path / "one" / "m.test.npz")
    assert two.clip_ids == one.clip_ids and two.metadata["world_size"] == 2
    np.testing.assert_allclose(two.logits, one.logits, rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "two" / "m.test.parts").exists()
