"""One task of a multi-task eval bundle (hfnet_core/analysis/task_view.py) and of a clip prediction
(``ClipPrediction.for_task``): exact against the EPIC-Kitchens scoring they stand for."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hfnet_core.analysis import task_view as tv
from hfnet_core.analysis.inference import run_clip
from hfnet_core.errors import BundleError
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.metrics_epic import epic_metrics
from hfnet_core.multitask import TaskSpec

V, N = 4, 3
#: listed actions (the action classifier's classes): 7 of the 12 pairs
ACTIONS = (0, 1, 4, 5, 6, 9, 11)


def _spec(actions=ACTIONS) -> TaskSpec:
    return TaskSpec(tuple(f"v{i}" for i in range(V)), tuple(f"n{i}" for i in range(N)), tuple(actions))


def _bundle(m: int = 40, seed: int = 0, actions=ACTIONS, read_only: bool = False) -> EvalBundle:
    spec = _spec(actions)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, V * N, m)
    labels[:3] = [-1, 2, 7]  # unknown, and two unlisted true pairs
    logits = rng.normal(0, 2, (m, spec.num_outputs)).astype(np.float32)
    features = rng.normal(size=(m, 5)).astype(np.float32)
    b = EvalBundle([f"c{i}" for i in range(m)], [f"c{i}" for i in range(m)], labels, logits, features,
                   spec.class_names(), {"tasks": spec.bundle_metadata(), "dataset": "x"})
    if read_only:
        for arr in (b.labels, b.logits, b.features):
            arr.setflags(write=False)
    return b


def _clip_prediction(spec: TaskSpec, seed: int):
    """One random 2-frame clip through a random multi-task TSN with ``spec``'s heads."""
    from hfnet_core.model import build_model

    torch.manual_seed(seed)
    model = build_model("mt_tsn_bninception_demo", num_classes=spec.num_outputs, num_segments=2, input_size=32,
                        consensus_args=spec.consensus_args()).eval()
    ckpt = SimpleNamespace(model=model, config=model.config, class_names=spec.class_names())
    return run_clip(ckpt, torch.randn(2, 3, 32, 32) * 50)


def test_verb_and_noun_views_are_the_heads_and_the_decoded_labels():
    b = _bundle()
    verb, noun = tv.task_view(b, "verb"), tv.task_view(b, "noun")
    assert verb.class_names == ["v0", "v1", "v2", "v3"] and noun.class_names == ["n0", "n1", "n2"]
    assert np.array_equal(verb.logits, b.logits[:, :V]) and np.array_equal(noun.logits, b.logits[:, V:V + N])
    known = b.labels >= 0
    assert np.array_equal(verb.labels[known], b.labels[known] // N)
    assert np.array_equal(noun.labels[known], b.labels[known] % N)
    assert verb.labels[0] == noun.labels[0] == -1
    assert verb.features is b.features and verb.clip_ids is b.clip_ids  # shared, not copied
    assert verb.metadata["task"] == "verb" and verb.metadata["task_classes"] == V


def test_action_view_top1_is_the_challenge_top1():
    """argmax over the view's columns = argmax of p(verb) p(noun) over every pair, mapped to its listed class
    or to UNLISTED; the view's accuracy on clips with a listed truth = EPIC's action top-1 on them."""
    b = _bundle(m=300, seed=3)
    view = tv.task_view(b, "action")
    assert view.class_names[-1] == tv.UNLISTED and len(view.class_names) == len(ACTIONS) + 1
    assert view.class_names[2] == "v1 n1"  # action id 4 = verb 1 * 3 + noun 1
    pv = torch.softmax(torch.from_numpy(b.logits[:, :V]).double(), 1).numpy()
    pn = torch.softmax(torch.from_numpy(b.logits[:, V:V + N]).double(), 1).numpy()
    joint = (pv[:, :, None] * pn[:, None, :]).reshape(len(b.labels), -1)
    best = joint.argmax(1)
    column = {a: i for i, a in enumerate(ACTIONS)}
    expected = np.array([column.get(int(a), len(ACTIONS)) for a in best])
    assert np.array_equal(view.logits.argmax(1), expected)
    np.testing.assert_allclose(np.exp(view.logits[:, :len(ACTIONS)]), joint[:, list(ACTIONS)], rtol=1e-5)
    unlisted = [a for a in range(V * N) if a not in ACTIONS]
    np.testing.assert_allclose(np.exp(view.logits[:, -1]), joint[:, unlisted].max(1), rtol=1e-5)
    # labels: listed truths to their column, unlisted (2, 7) and unknown to -1
    assert view.labels[0] == view.labels[1] == view.labels[2] == -1
    assert view.metadata["unlisted_true"] == int(np.isin(b.labels, unlisted).sum())
    listed = view.labels >= 0
    m = epic_metrics(b.logits[listed, :V], b.logits[listed, V:V + N], b.labels[listed] // N, b.labels[listed] % N)
    hits = (view.logits.argmax(1) == view.labels)[listed].mean()
    assert hits == pytest.approx(m["top1"]["action"])


def test_action_view_without_unlisted_pairs_has_no_extra_class(monkeypatch):
    every = tuple(range(V * N))
    b = _bundle(m=70, actions=every)
    view = tv.task_view(b, "action")
    assert tv.UNLISTED not in view.class_names and len(view.class_names) == V * N
    assert np.array_equal(view.labels[b.labels >= 0], b.labels[b.labels >= 0])  # columns are the action ids
    monkeypatch.setattr(tv, "_CHUNK", 8)  # chunked scoring gives the same numbers
    assert np.array_equal(tv.task_view(b, "action").logits, view.logits)


def test_single_task_bundles_pass_through_and_read_only_stays_read_only():
    b = _bundle(read_only=True)
    plain = EvalBundle(b.clip_ids, b.paths, np.zeros(len(b.labels)), b.logits[:, :5], b.features,
                       list("abcde"), {})
    assert tv.task_view(plain, "noun") is plain
    for task in tv.TASKS:
        view = tv.task_view(b, task)
        assert view.read_only
        assert view.class_names == tv.view_class_names(_spec(), task)
    with pytest.raises(ValueError):
        tv.task_view(b, "adverb")


def test_damaged_task_metadata_is_a_bundle_error():
    b = _bundle()
    b.metadata["tasks"] = {"verbs": 40, "nouns": 3, "actions": []}  # does not fit the logits
    with pytest.raises(BundleError, match="multi-task metadata"):
        tv.task_view(b, "verb")
    b.metadata["tasks"] = {"nouns": 3}
    with pytest.raises(BundleError):
        tv.task_view(b, "verb")
    b = _bundle()
    b.labels[5] = V * N + 3  # an out-of-range action id is unknown, not an index error
    assert tv.task_view(b, "verb").labels[5] == -1 and tv.task_view(b, "action").labels[5] == -1


def test_clip_prediction_for_task_matches_the_bundle_view():
    """The same output seen by Clip lab (one clip) and by Feature space (a bundle) says the same."""
    spec = _spec()
    pred = _clip_prediction(spec, 0)
    b = EvalBundle(["c"], ["c"], np.array([4]), pred.logits[None], pred.pooled_features[None], spec.class_names(),
                   {"tasks": spec.bundle_metadata()})
    for task in tv.TASKS:
        p = pred.for_task(spec, task)
        view = tv.task_view(b, task)
        assert p.class_names == view.class_names and p.task == task
        np.testing.assert_allclose(p.logits, view.logits[0], rtol=1e-5, atol=1e-6)
        assert p.top5_names == pred.tasks[task].names
        best = int(view.logits[0].argmax())
        assert p.top5_indices[0] == best
        if view.class_names[best] != tv.UNLISTED:
            assert p.top5_names[0] == view.class_names[best]
    verb, noun, action = (pred.for_task(spec, t) for t in tv.TASKS)
    assert verb.probs.sum() == pytest.approx(1, abs=1e-5) and noun.probs.sum() == pytest.approx(1, abs=1e-5)
    assert [verb.output_column(i) for i in range(V)] == list(range(V))
    assert [noun.output_column(i) for i in range(N)] == [V + i for i in range(N)]
    assert [action.output_column(i) for i in range(len(ACTIONS))] == [V + N + i for i in range(len(ACTIONS))]
    assert action.output_column(len(ACTIONS)) == -1  # UNLISTED: no single output column
    # the action view's probability of a listed pair is p(verb) * p(noun)
    a = ACTIONS[3]
    assert action.probs[3] == pytest.approx(verb.probs[a // N] * noun.probs[a % N], rel=1e-5)


def test_prediction_export_names_the_task_and_keeps_all_three():
    from hfnet_core.analysis.exports import prediction_record

    spec = _spec()
    noun = _clip_prediction(spec, 1).for_task(spec, "noun")
    rec = prediction_record("clip.mp4", {"A": noun}, true_label="n2")
    m = rec["models"][0]
    assert m["task"] == "noun" and set(m["tasks"]) == {"verb", "noun", "action"}
    assert m["top1"] == noun.top5_names[0] and m["correct"] == (noun.top5_names[0] == "n2")
    assert len(m["logits"]) == N and m["top_k"][0]["logit"] == pytest.approx(float(noun.logits.max()))


def test_no_action_classifier_lists_every_pair_up_to_the_cap():
    small = TaskSpec(("a", "b"), ("x", "y", "z"))
    assert np.array_equal(tv.listed_actions(small), np.arange(6)) and tv.has_action_view(small)
    assert tv.UNLISTED not in tv.view_class_names(small, "action")
    epic = TaskSpec(tuple(f"v{i}" for i in range(125)), tuple(f"n{i}" for i in range(352)))  # EPIC-55, no action head
    assert tv.listed_actions(epic) is None and not tv.has_action_view(epic)
    with pytest.raises(ValueError):
        tv.view_class_names(epic, "action")
    b = EvalBundle(["c"], ["c"], np.array([352 * 3 + 7]), np.zeros((1, 477), np.float32), np.zeros((1, 2), np.float32),
                   epic.class_names(), {"tasks": epic.bundle_metadata()})
    with pytest.raises(BundleError, match="no action classifier"):
        tv.task_view(b, "action")
    assert tv.task_view(b, "verb").labels[0] == 3 and tv.task_view(b, "noun").labels[0] == 7


def test_projections_of_a_multitask_bundle_group_by_verb(tmp_path):
    """Action ids reach verb x noun (1,499 here), far past the bundle's V + N columns: projections group by
    the decoded verbs instead (class centroids, silhouette) and say so."""
    from hfnet_core.analysis.precompute import project_bundle
    from hfnet_core.analysis.projection_store import ProjectionSpec

    spec = TaskSpec(tuple(f"v{i}" for i in range(5)), tuple(f"n{i}" for i in range(300)))
    rng = np.random.default_rng(0)
    m = 60
    labels = rng.integers(0, 5, m) * 300 + rng.integers(0, 300, m)
    labels[0] = 5 * 300 + 9  # out of range: unknown
    feats = rng.normal(size=(m, 8)).astype(np.float32) + labels[:, None] // 300
    b = EvalBundle([f"c{i}" for i in range(m)], [""] * m, labels, rng.normal(size=(m, 305)).astype(np.float32),
                   feats, spec.class_names(), {"tasks": spec.bundle_metadata()})
    y, k, what = tv.grouping_labels(b)
    assert k == 5 and what == "verb" and y[0] == -1 and np.array_equal(y[1:], labels[1:] // 300)
    b.save(tmp_path / "mt.test.npz")
    done = project_bundle(tmp_path / "mt.test.npz", ProjectionSpec(), methods=("pca",), parallel=False)
    assert done.set.info["grouped_by"] == "verb" and done.set.centroids["pca"].shape == (5, 2)
    assert done.set.silhouette is not None


def test_column_prob_is_the_softmax_within_the_columns_task():
    spec = _spec()
    pred = _clip_prediction(spec, 2)
    noun = pred.for_task(spec, "noun")
    raw = pred.logits.astype(np.float64)
    for column, (lo, hi) in ((1, (0, V)), (V + 2, (V, V + N)), (V + N + 3, (V + N, spec.num_outputs))):
        z = np.exp(raw[lo:hi] - raw[lo:hi].max())
        assert noun.column_prob(spec, column) == pytest.approx(z[column - lo] / z.sum(), rel=1e-5)
    assert pred.column_prob(None, 5) == pytest.approx(float(pred.probs[5]))
    assert noun.for_task(spec, "verb").class_names == list(_spec().verb_names)  # a view of a view


def test_a_task_view_exports_as_numpy_with_its_own_class_list():
    from hfnet_core.analysis import exports

    spec = _spec()
    pred = _clip_prediction(spec, 3)
    ckpt = SimpleNamespace(config=None, class_names=spec.class_names(), sha256="x", path="mt.safetensors")
    for task in tv.TASKS:
        view = pred.for_task(spec, task)
        info = exports.model_info(ckpt, "A", view.class_names, task)
        assert info["task"] == task and info["class_names"] == view.class_names
        recs = [exports.prediction_record("clip", {"A": view})]
        with np.load(io.BytesIO(exports.predictions_npz(recs, [info], {}))) as z:
            logits = [z[k] for k in z.files if "logits" in k]
            assert logits and logits[0].shape[-1] == len(view.class_names)
