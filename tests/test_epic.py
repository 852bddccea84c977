"""EPIC-Kitchens-55: the challenge's action scores and metrics checked by hand on tiny inputs, the
annotation-CSV dataset over frame folders (written here), the verb/noun view of SynthSomething, the
multi-task loss, training and evaluation end to end, and the EPIC baselines' checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from hfnet_core.checkpoint import CheckpointError
from hfnet_core.data.epic import EpicKitchensDataset, read_annotations
from hfnet_core.data.loading import build_dataset
from hfnet_core.data.synthetic import (SYNTH_ACTIONS, SYNTH_NOUNS, SynthSomethingDataset, clip_seed, clip_shape,
                                       generate_clip, synth_task_spec)
from hfnet_core.errors import DatasetError
from hfnet_core.evaluate import evaluate_model, multitask_metrics
from hfnet_core.importers import import_checkpoint
from hfnet_core.metrics_epic import action_scores, epic_metrics, format_table_three, many_shot
from hfnet_core.model import build_model
from hfnet_core.multitask import TaskSpec

E = math.e


def test_action_scores_truncated_softmax_by_hand():
    verb = np.array([[2.0, 1.0, 0.0]])
    noun = np.array([[0.0, math.log(3.0)]])
    v, n, s = action_scores(verb, noun, top_k=2)
    # top-2 verbs {0, 1}: softmax([2, 1]) = [e, 1] / (e + 1); nouns {1, 0}: softmax([ln 3, 0]) = [3/4, 1/4]
    assert v.tolist() == [[0, 1]] and n.tolist() == [[1, 1]]  # (0,1), then (1,1) since 3/4 > e/4 * ...
    assert s[0, 0] == pytest.approx(E / (E + 1) * 0.75)
    assert s[0, 1] == pytest.approx(1 / (E + 1) * 0.75)  # 3 > e: (1,1) beats (0,0)
    v3, n3, s3 = action_scores(verb, noun, top_k=4)  # all 3 verbs x 2 nouns, 4 kept
    assert list(zip(v3[0], n3[0])) == [(0, 1), (1, 1), (0, 0), (2, 1)]
    z = math.exp(2) + math.exp(1) + 1
    assert s3[0, 2] == pytest.approx(math.exp(2) / z * 0.25)


# four clips, 3 verbs, 2 nouns (numbers worked out in the comments)
VERB = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 2], [0, 0, 5]], float)  # top-1: 0, 1, 2, 2
NOUN = np.array([[1, 0], [0, 1], [2, 0], [0, 4]], float)  # top-1: 0, 1, 0, 1
V_LAB, N_LAB = np.array([0, 2, 2, 1]), np.array([0, 1, 1, 1])


def test_epic_metrics_by_hand():
    m = epic_metrics(VERB, NOUN, V_LAB, N_LAB, {"verb": np.array([0, 2]), "noun": np.array([0, 1]),
                                                "action": np.array([0, 3, 5])})
    assert m["num_clips"] == 4
    assert m["top1"] == {"verb": 0.5, "noun": 0.75, "action": 0.25}  # only clip 0 gets both right
    assert m["top5"]["verb"] == 1.0 and m["top5"]["noun"] == 1.0
    # verbs, many-shot {0, 2}: precision (1/1 + 1/2) / 2, recall (1/1 + 1/2) / 2
    assert m["precision"]["verb"] == pytest.approx(0.75) and m["recall"]["verb"] == pytest.approx(0.75)
    # nouns {0, 1}: precision (1/2 + 2/2) / 2, recall (1/1 + 2/3) / 2
    assert m["precision"]["noun"] == pytest.approx(0.75) and m["recall"]["noun"] == pytest.approx(5 / 6)
    # actions (id v*2+n): labels [0, 5, 5, 3], top-1 [0, 3, 4, 5] -> only class 0 is right
    assert m["precision"]["action"] == pytest.approx(1 / 3) and m["recall"]["action"] == pytest.approx(1 / 3)
    # without many-shot lists every present class counts: verb 1 (predicted once, wrongly) adds zeros
    m_all = epic_metrics(VERB, NOUN, V_LAB, N_LAB)
    assert m_all["precision"]["verb"] == pytest.approx(0.5) and m_all["recall"]["verb"] == pytest.approx(0.5)
    # many-shot classes absent from the ground truth are not averaged in
    m_abs = epic_metrics(VERB, NOUN, V_LAB, N_LAB, {"verb": np.array([0, 2, 99]), "noun": np.array([0]),
                                                    "action": np.array([0])})
    assert m_abs["many_shot_classes_used"] == {"verb": 2, "noun": 1, "action": 1}
    assert m_abs["precision"]["noun"] == pytest.approx(0.5) and m_abs["recall"]["noun"] == pytest.approx(1.0)
    # unknown labels are left out
    m_unk = epic_metrics(np.vstack([VERB, VERB[:1]]), np.vstack([NOUN, NOUN[:1]]), np.r_[V_LAB, -1],
                         np.r_[N_LAB, -1])
    assert m_unk["num_clips"] == 4 and m_unk["top1"] == m_all["top1"]


def test_many_shot_definition():
    verbs = [0] * 3 + [1] + [2] * 3
    nouns = [0, 0, 1, 1, 0, 1, 1]
    ms = many_shot(verbs, nouns, num_nouns=2, threshold=2)  # > 2 instances
    assert ms["verb"].tolist() == [0, 2] and ms["noun"].tolist() == [0, 1]
    # pairs seen in training: (0,0)=0, (0,1)=1, (1,1)=3, (2,0)=4, (2,1)=5; verb 1 (one instance) is not
    # many-shot, so (1,1) is not a many-shot action
    assert ms["action"].tolist() == [0, 1, 4, 5]
    # the same from a spec's training counts (what evaluation uses)
    from hfnet_core.metrics_epic import many_shot_from_counts
    from hfnet_core.multitask import spec_from_training_labels

    spec = spec_from_training_labels(["a", "b", "c"], ["x", "y"], verbs, nouns)
    assert spec.actions == (0, 1, 3, 4, 5)
    from_counts = many_shot_from_counts(spec.train_counts, 2, threshold=2)
    assert all(from_counts[k].tolist() == ms[k].tolist() for k in ms)


def test_table_three_layout():
    m = epic_metrics(VERB, NOUN, V_LAB, N_LAB)
    text = format_table_three({"S1": {"TSN (RGB)": m, "HF-TSN (RGB)": m}, "S2": {"TSN (RGB)": m}})
    lines = text.splitlines()
    assert lines[0].startswith("| | Method | Top-1 V | Top-1 N | Top-1 A | Top-5 V")
    assert lines[2].startswith("| S1 | TSN (RGB) | 50.00 | 75.00 | 25.00 | 100.00")
    assert lines[3].startswith("|  | HF-TSN (RGB) |") and lines[4].startswith("| S2 | TSN (RGB) |")


def test_multitask_spec_loss_and_split():
    spec = TaskSpec(("a", "b"), ("x", "y", "z"), actions=(1, 3))  # (a,y), (b,x)
    assert spec.class_names() == ["verb: a", "verb: b", "noun: x", "noun: y", "noun: z", "action: a y", "action: b x"]
    logits = torch.randn(3, 7)
    labels = torch.tensor([1, 3, 5])  # (a,y) action 0; (b,x) action 1; (b,z) no action class
    parts = spec.split(logits)
    ce = torch.nn.functional.cross_entropy
    want = (ce(parts["verb"], torch.tensor([0, 1, 1])) + ce(parts["noun"], torch.tensor([1, 0, 2]))
            + ce(parts["action"][:2], torch.tensor([0, 1]), reduction="sum") / 3)
    torch.testing.assert_close(spec.loss(logits, labels), want)
    assert [int(x) for x in spec.decode(np.array([5, -1]))[0]] == [1, -1]


# --- the annotation-CSV dataset ---------------------------------------------------------------------

HEADER = ("uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,stop_frame,verb,"
          "verb_class,noun,noun_class,all_nouns,all_noun_classes\n")


def write_epic(tmp_path, frames=40):
    """P01/P01_01 with ``frames`` JPEGs whose grey level encodes the frame number (5 * n)."""
    folder = tmp_path / "P01" / "P01_01"
    folder.mkdir(parents=True)
    for i in range(1, frames + 1):
        Image.fromarray(np.full((24, 32, 3), 5 * i, np.uint8)).save(folder / f"frame_{i:010d}.jpg", quality=100)
    (tmp_path / "EPIC_train_action_labels.csv").write_text(
        HEADER + "0,P01,P01_01,open fridge,00:00:01.00,00:00:02.00,1,8,open,3,fridge,12,['fridge'],[12]\n"
        "1,P01,P01_01,take cup,00:00:02.00,00:00:03.00,9,24,take,0,cup,13,['cup'],[13]\n"
        "2,P01,P01_01,open cup,00:00:03.00,00:00:04.00,25,40,open,3,cup,13,['cup'],[13]\n")
    (tmp_path / "EPIC_verb_classes.csv").write_text("verb_id,class_key,verbs\n0,take,\"['take']\"\n3,open,\"['open']\"\n")
    (tmp_path / "EPIC_test_s1_timestamps.csv").write_text(
        "uid,participant_id,video_id,start_timestamp,stop_timestamp,start_frame,stop_frame\n"
        "7,P01,P01_01,00:00:01.00,00:00:02.00,11,18\n")
    return tmp_path


def grey_frames(item):
    """Frame numbers back from the grey levels of an item (BN-Inception convention: BGR - mean)."""
    mean = np.array([104, 117, 128], np.float32)
    bgr = item["frames"].numpy()[:, :, 0, 0] + mean
    return np.round(bgr[:, 0] / 5).astype(int)


def test_epic_dataset_samples_inside_segments(tmp_path):
    root = write_epic(tmp_path)
    ds = EpicKitchensDataset(root, root / "EPIC_train_action_labels.csv", num_segments=4)
    spec = ds.task_spec
    assert (spec.num_verbs, spec.num_nouns) == (125, 352)
    assert spec.verb_names[3] == "open" and spec.verb_names[0] == "take" and spec.noun_names[12] == "noun_012"
    assert spec.actions == (0 * 352 + 13, 3 * 352 + 12, 3 * 352 + 13)
    assert spec.train_counts["verb"] == {3: 2, 0: 1}
    assert [s[1] for s in ds.samples] == [3 * 352 + 12, 13, 3 * 352 + 13]
    # eval: the centres of 4 equal parts of frames 9..24 (16 frames): 9 + [2, 6, 10, 14]
    assert grey_frames(ds[1]).tolist() == [11, 15, 19, 23]
    train = EpicKitchensDataset(root, root / "EPIC_train_action_labels.csv", num_segments=4, mode="train")
    torch.manual_seed(0)
    for _ in range(5):
        got = grey_frames(train[2])
        assert all(25 + 4 * k <= f < 25 + 4 * (k + 1) for k, f in enumerate(got)), got
    test = EpicKitchensDataset(root, root / "EPIC_test_s1_timestamps.csv", num_segments=2,
                               train_annotations=root / "EPIC_train_action_labels.csv")
    assert test[0]["label"] == -1 and test.task_spec.actions == spec.actions


def test_epic_dataset_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("participant_id,video_id,start_frame\nP01,P01_01,1\n")
    with pytest.raises(DatasetError, match="stop_frame"):
        read_annotations(bad)
    bad.write_text(HEADER + "0,P01,P01_01,x,a,b,10,5,open,3,cup,13,[],[]\n")
    with pytest.raises(DatasetError, match="line 2"):
        read_annotations(bad)
    root = write_epic(tmp_path / "d")
    with pytest.raises(DatasetError, match="no verb_class"):
        EpicKitchensDataset(root, root / "EPIC_test_s1_timestamps.csv", num_segments=2)
    # a missing frame skips the clip, named
    (root / "P01" / "P01_01" / "frame_0000000011.jpg").unlink()
    ds = EpicKitchensDataset(root, root / "EPIC_train_action_labels.csv", num_segments=4)
    with pytest.warns(UserWarning):
        assert ds[1] is None
    assert "frame_0000000011.jpg" in ds.skipped[0][0]


def test_epic_dataset_through_build_dataset_and_evaluation(tmp_path):
    from hfnet_core.config import DataSection

    root = write_epic(tmp_path)
    data = DataSection(dataset="epic-kitchens", root=str(root), augment=False)
    model = build_model("mt_hf_tsn_bninception_demo", num_segments=2, input_size=32,
                        num_classes=125 + 352 + 3,
                        consensus_args={"verbs": 125, "nouns": 352, "actions": [13, 3 * 352 + 12, 3 * 352 + 13]})
    ds = build_dataset(data, "train", model.config, train=False)
    assert len(ds.class_names) == model.config.num_classes == 480
    metrics, bundle = evaluate_model(model, ds)
    assert metrics["num_clips"] == 3 and set(metrics["epic"]["top1"]) == {"verb", "noun", "action"}
    assert bundle.metadata["tasks"]["verbs"] == 125 and bundle.logits.shape == (3, 480)
    assert TaskSpec.from_bundle(bundle).actions == (13, 3 * 352 + 12, 3 * 352 + 13)


# --- SynthSomething's verb / noun view --------------------------------------------------------------

def test_synth_verb_noun_view():
    ds = SynthSomethingDataset("val", 2, num_frames=4, size=32, view="verb_noun")
    spec = ds.task_spec
    assert (spec.num_verbs, spec.num_nouns, len(spec.actions)) == (16, 6, 82) and spec.actions == tuple(SYNTH_ACTIONS)
    for i in range(len(ds)):
        item = ds[i]
        verb, noun = divmod(item["label"], len(SYNTH_NOUNS))
        assert verb == i % 16 and item["label"] == ds.label_of(i) and item["label"] in SYNTH_ACTIONS
        assert noun == clip_shape(verb, clip_seed(0, "val", i // 16), 4, 32)
    # the pixels are those of the action view: only the labels are factored
    plain = SynthSomethingDataset("val", 2, num_frames=4, size=32)
    assert np.array_equal(ds.raw_clip(5)[0], plain.raw_clip(5)[0])
    assert np.array_equal(ds.raw_clip(5)[0], generate_clip(5, clip_seed(0, "val", 0), 4, 32))
    counted = synth_task_spec(3, (0, 1), 4, 32)
    assert sum(counted.train_counts["verb"].values()) == 2 * 3 * 16
    assert sum(counted.train_counts["noun"].values()) == 2 * 3 * 16


def test_multitask_training_and_shipping_on_synth(tmp_path):
    from hfnet_core.demo import demo_config, ship, table_three
    from hfnet_core.train import train

    cfg = demo_config("mt_tsn_bninception_demo", tmp_path / "work", epochs=1, train_per_class=1)
    assert cfg.data.synth_view == "verb_noun"
    cfg.model.input_size, cfg.model.num_segments = 32, 2
    cfg.data.synth_val_per_class = cfg.data.synth_test_per_class = 1
    cfg.data.num_workers, cfg.train.progress = 0, False
    result = train(cfg)
    assert np.isfinite(result.history[-1]["train_loss"]) and 0 <= result.history[-1]["val_top1"] <= 1
    metrics = ship(tmp_path / "work" / "mt_tsn_bninception_demo", tmp_path / "ship", "mt_tsn_demo", cfg)
    assert metrics["num_clips"] == 16 and metrics["many_shot"]["verbs"] == 0  # 1 clip per verb: none > 100
    assert "within_pair_accuracy" in metrics
    table = table_three([tmp_path / "ship"])
    assert table["rows"][0]["epic"]["top1"]["action"] == metrics["epic"]["top1"]["action"]
    assert table["rows"][1]["epic"] is None and "| SynthSomething | TSN (RGB) |" in table["markdown"]
    json.dumps(table)


def test_multitask_model_needs_verb_noun_data():
    from hfnet_core.config import TrainConfig
    from hfnet_core.errors import ConfigError
    from hfnet_core.train import build_model_from_config

    cfg = TrainConfig()
    cfg.model.name = "mt_tsn_bninception_demo"
    with pytest.raises(ConfigError, match="verb / noun"):
        build_model_from_config(cfg, 16)
    cfg.model.name = "tsn_bninception_demo"
    with pytest.raises(ConfigError, match="not a multi-task"):
        build_model_from_config(cfg, 104, synth_task_spec())
    cfg.model.name = "epic_tsn_bninception"  # no action head: the data's actions are not used
    mcfg, model = build_model_from_config(cfg, 104, synth_task_spec())
    assert mcfg.num_classes == 22 and model.head.fc_action is None


# --- the EPIC baselines' checkpoints ----------------------------------------------------------------

def epic_checkpoint(model, path, **fields):
    sd = {(k[len("head."):] if k.startswith("head.") else k): v.clone() for k, v in model.state_dict().items()
          if not k.endswith("num_batches_tracked")}
    torch.save({"model_type": "tsn", "epoch": 80, "segment_count": 8, "modality": "RGB", "arch": "BNInception",
                "consensus_type": "avg", "state_dict": sd, **fields}, path)
    return sd


def test_epic_tsn_checkpoint_loads_into_the_multitask_head(tmp_path):
    torch.manual_seed(0)
    model = build_model("epic_tsn_bninception", width_mult=0.25).eval()
    sd = epic_checkpoint(model, tmp_path / "TSN_arch=BNInception_modality=RGB_segments=8-efdfe7ba.pth.tar")
    assert "fc_verb.weight" in sd and "base_model.conv1_7x7_s2.weight" in sd and not any(k.startswith("module.") for k in sd)
    loaded = import_checkpoint(tmp_path / "TSN_arch=BNInception_modality=RGB_segments=8-efdfe7ba.pth.tar",
                               input_size=64)
    assert loaded.config.consensus == "multitask" and loaded.config.num_segments == 8
    assert loaded.config.consensus_args == {"verbs": 125, "nouns": 352, "actions": [], "action_bias": False}
    x = torch.randn(1, 8, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    spec = TaskSpec.from_model(loaded.config, loaded.class_names)
    assert spec.num_outputs == 477 and loaded.class_names[125] == "noun: noun_000"
    m = multitask_metrics(loaded.model(x).detach().numpy(), np.array([3 * 352 + 7]), spec)
    assert m["num_clips"] == 1
    epic_checkpoint(model, tmp_path / "flow.pth.tar", modality="Flow")
    with pytest.raises(CheckpointError, match="Flow"):
        import_checkpoint(tmp_path / "flow.pth.tar")


def test_run_clip_gives_verb_noun_and_action_top5():
    from types import SimpleNamespace

    from hfnet_core.analysis.inference import run_clip

    torch.manual_seed(0)
    spec = synth_task_spec()
    model = build_model("mt_hf_tsn_bninception_demo", num_classes=spec.num_outputs, num_segments=2, input_size=32,
                        consensus_args=spec.consensus_args()).eval()
    ckpt = SimpleNamespace(model=model, config=model.config, class_names=spec.class_names())
    pred = run_clip(ckpt, torch.randn(2, 3, 32, 32) * 50)
    assert set(pred.tasks) == {"verb", "noun", "action"}
    verb, noun, action = pred.tasks["verb"], pred.tasks["noun"], pred.tasks["action"]
    assert len(verb.names) == len(noun.names) == len(action.names) == 5
    assert sum(verb.probs) <= 1 + 1e-6 and pred.logits.shape == (spec.num_outputs,)
    # the top action is (top verb, top noun), with probability p(verb) * p(noun)
    assert action.indices[0] == verb.indices[0] * 6 + noun.indices[0]
    assert action.probs[0] == pytest.approx(verb.probs[0] * noun.probs[0])
    assert action.names[0] == f"{verb.names[0]} {noun.names[0]}" and pred.top5_names == action.names
