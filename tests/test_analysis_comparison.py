"""Model comparison (Fig. 3a, per-class accuracy, confusion, flipped clips): exact answers on hand-made bundles."""

from __future__ import annotations

import numpy as np
import pytest

from _analysis_fixtures import designed_pair
from hfnet_core.analysis.comparison import (
    ClassListMismatch,
    align,
    check_same_classes,
    confusion,
    flipped_clips,
    improved_clip_ids,
    most_improved,
    per_class_accuracy,
    softmax,
    take,
)
from hfnet_core.eval_bundle import EvalBundle

CLASSES = ["cat", "dog", "eel"]


def bundle(ids, labels, preds, classes=CLASSES, conf=None) -> EvalBundle:
    """Logits with ``conf`` (default 2.0) on the predicted class, 0 elsewhere."""
    logits = np.zeros((len(ids), len(classes)), dtype=np.float32)
    for i, p in enumerate(preds):
        logits[i, p] = 2.0 if conf is None else conf[i]
    return EvalBundle(list(ids), [f"/data/{c}.mp4" for c in ids], np.asarray(labels), logits,
                      np.zeros((len(ids), 4)), list(classes))


def test_designed_pair_most_improved_matches_the_construction():
    a, b = designed_pair()
    rows = most_improved(a, b, top_k=10)
    assert [r["class_index"] for r in rows] == [3, 7, 11, 2, 6, 10, 14, 15, 1, 5]
    assert [r["n_improved"] for r in rows] == [3, 3, 3, 2, 2, 2, 2, 2, 1, 1]
    assert [r["n_worsened"] for r in rows] == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    for r in rows:
        c = r["class_index"]
        assert r["b_prediction"] == c ^ 1 and r["b_prediction_count"] == r["n_improved"]
        assert r["label"] == f"{a.class_names[c]} / {a.class_names[c ^ 1]}"
        assert r["n_clips"] == 4
    r15 = rows[7]
    assert r15["acc_a"] == pytest.approx(0.75) and r15["acc_b"] == pytest.approx(0.5)
    assert len(most_improved(a, b, top_k=100)) == 12  # classes with c % 4 == 0 improve nowhere
    assert most_improved(a, b, top_k=0) == []


def test_most_improved_uses_the_most_frequent_wrong_prediction_of_b_ties_to_lower_index():
    ids = [f"c{i}" for i in range(7)]
    labels = [0, 0, 0, 0, 1, 1, 2]
    a = bundle(ids, labels, [0, 0, 0, 0, 1, 1, 2])
    b = bundle(ids, labels, [2, 2, 1, 0, 2, 0, 2])  # class 0: B says eel twice, dog once
    rows = most_improved(a, b)
    assert [(r["class_index"], r["n_improved"], r["b_prediction"]) for r in rows] == [(0, 3, 2), (1, 2, 0)]
    assert rows[0]["label"] == "cat / eel" and rows[0]["b_prediction_count"] == 2
    assert rows[1]["b_prediction_count"] == 1  # tie between classes 0 and 2: the lower index wins
    # Ranking ties on n_improved are broken by the net gain: worsening clips push a class down.
    b2 = bundle(ids, labels, [2, 2, 0, 0, 2, 0, 2])
    a2 = bundle(ids, labels, [0, 0, 1, 0, 1, 1, 2])  # class 0: 2 improved, 1 worsened; class 1: 2, 0
    assert [r["class_index"] for r in most_improved(a2, b2)] == [1, 0]


def test_alignment_by_clip_id_in_any_order_with_extra_and_duplicate_clips():
    a = bundle(["x", "y", "z", "y"], [0, 1, 2, 1], [0, 1, 2, 1])
    b = bundle(["q", "z", "x", "w"], [0, 2, 0, 1], [0, 0, 1, 1])
    al = align(a, b)
    assert al.clip_ids == ["x", "z"] and al.n_matched == 2 and (al.n_a, al.n_b) == (4, 4)
    assert al.rows_a.tolist() == [0, 2] and al.rows_b.tolist() == [2, 1]
    assert "2 clips matched by id (4 in A, 4 in B)" in al.describe()
    rows = most_improved(a, b)
    assert [(r["class_index"], r["n_improved"], r["b_prediction"]) for r in rows] == [(0, 1, 1), (2, 1, 0)]
    assert [f["clip_id"] for f in flipped_clips(a, b, 2)] == ["z"]
    # The same comparison on pre-aligned bundles gives the same answer.
    assert most_improved(take(a, al.rows_a), take(b, al.rows_b)) == rows


def test_clips_whose_labels_disagree_are_not_counted():
    a = bundle(["x", "y"], [0, 1], [0, 1])
    b = bundle(["x", "y"], [0, 2], [1, 0])
    al = align(a, b)
    assert al.label_conflicts == 1 and al.labels.tolist() == [0, -1]
    assert "1 have different labels" in al.describe()
    assert [r["class_index"] for r in most_improved(a, b)] == [0]


def test_class_list_mismatch_messages_are_specific():
    ids, labels = ["x"], [0]
    a = bundle(ids, labels, [0])
    check_same_classes(a, bundle(ids, labels, [0]))
    with pytest.raises(ClassListMismatch, match=r"A has 3 classes and B has 4.*only in B: 'fox'"):
        check_same_classes(a, bundle(ids, labels, [0], classes=CLASSES + ["fox"]))
    with pytest.raises(ClassListMismatch, match=r"different order \(index 0: 'cat' in A, 'dog' in B\)"):
        check_same_classes(a, bundle(ids, labels, [0], classes=["dog", "cat", "eel"]))
    with pytest.raises(ClassListMismatch, match=r"class 2 is 'eel' in HF but 'emu' in TSN"):
        check_same_classes(a, bundle(ids, labels, [0], classes=["cat", "dog", "emu"]), "HF", "TSN")
    with pytest.raises(ClassListMismatch):
        most_improved(a, bundle(ids, labels, [0], classes=["dog", "cat", "eel"]))
    with pytest.raises(ClassListMismatch):
        flipped_clips(a, bundle(ids, labels, [0], classes=["dog", "cat", "eel"]), 0)


def test_per_class_accuracy_and_confusion_exact():
    b = bundle(["a", "b", "c", "d", "e", "f"], [0, 0, 0, 1, 1, -1], [0, 1, 0, 1, 0, 2])
    acc = per_class_accuracy(b)
    assert acc[0] == pytest.approx(2 / 3) and acc[1] == pytest.approx(0.5) and np.isnan(acc[2])
    cm = confusion(b)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 0]]  # the unlabelled clip is not counted
    cmn = confusion(b, normalize=True)
    np.testing.assert_allclose(cmn, [[2 / 3, 1 / 3, 0], [0.5, 0.5, 0], [0, 0, 0]])


def test_flipped_clips_sorted_by_b_confidence_with_probabilities():
    ids = ["p", "q", "r", "s"]
    labels = [1, 1, 1, 1]
    a = bundle(ids, labels, [1, 1, 1, 0], conf=[3.0, 1.0, 2.0, 1.0])
    b = bundle(ids, labels, [0, 2, 1, 1], conf=[1.0, 4.0, 1.0, 1.0])
    flips = flipped_clips(a, b, 1)
    assert [f["clip_id"] for f in flips] == ["q", "p"]
    q = flips[0]
    assert q["pred_b"] == 2 and q["pred_b_name"] == "eel" and q["row_a"] == 1 and q["row_b"] == 1
    assert q["path"] == "/data/q.mp4"
    assert q["conf_b"] == pytest.approx(softmax(np.array([0.0, 0.0, 4.0]))[2])
    assert q["prob_b_true"] == pytest.approx(softmax(np.array([0.0, 0.0, 4.0]))[1])
    assert q["conf_a"] == pytest.approx(softmax(np.array([0.0, 1.0, 0.0]))[1])
    assert flipped_clips(a, b, 0) == []
    with pytest.raises(IndexError):
        flipped_clips(a, b, 3)


def test_improved_clip_ids_are_the_matched_clips_of_the_top_classes():
    a, b = designed_pair()
    classes, ids = improved_clip_ids(a, b, top_k=3)
    assert classes == [3, 7, 11]
    assert ids == [c for c, y in zip(a.clip_ids, a.labels) if y in (3, 7, 11)] and len(ids) == 12
