"""Model comparison (Fig. 3a, per-class accuracy, confusion, flipped clips): exact answers on hand-made bundles."""

from __future__ import annotations

import numpy as np
import pytest

from _analysis_fixtures import designed_pair
from hfnet_core.analysis.comparison import (
    ClassListMismatch,
    align,
    check_same_classes,
    cluster_order,
    compare_confused_pairs,
    confused_pairs,
    confusion,
    confusion_view,
    find_classes,
    fixes_breaks,
    flipped_clips,
    improved_clip_ids,
    most_improved,
    per_class_accuracy,
    same_model_warning,
    softmax,
    top_probability,
    take,
)
from hfnet_core.analysis.synthetic_bundles import synthetic_pair
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


# --- at 174 classes ---------------------------------------------------------------------------------

def _brute_force(a: EvalBundle, b: EvalBundle) -> tuple[int, int]:
    ib = {c: j for j, c in enumerate(b.clip_ids)}
    fixed = broken = 0
    for i, cid in enumerate(a.clip_ids):
        j = ib.get(cid)
        if j is None or a.labels[i] < 0:
            continue
        ra, rb = a.logits[i].argmax() == a.labels[i], b.logits[j].argmax() == a.labels[i]
        fixed += bool(ra and not rb)
        broken += bool(rb and not ra)
    return fixed, broken


def test_fixes_and_breaks_count_every_clip_when_a_is_the_weaker_model():
    hf, tsn = designed_pair()
    fb = fixes_breaks(tsn, hf)  # A = the weaker model
    # TSN is right where HF is wrong only on clip 0 of class 15; HF is right on every clip TSN gets wrong:
    # c % 4 clips of each class c < 15 and 2 of class 15.
    assert (fb.fixed, fb.broken) == (1, 23) and fb.net == -22
    assert fb.fixed + fb.broken + fb.both_right + fb.both_wrong == fb.n == 64
    assert fb.broken_per_class.tolist() == [c % 4 for c in range(15)] + [2]
    assert fb.fixed_per_class.tolist() == [0] * 15 + [1]
    # The old way - summing the most-improved rows - drops every class where A fixes nothing.
    assert sum(r["n_worsened"] for r in most_improved(tsn, hf, top_k=None)) == 2
    assert (fixes_breaks(hf, tsn).fixed, fixes_breaks(hf, tsn).broken) == (23, 1)


def test_fixes_and_breaks_at_paper_scale_match_a_clip_by_clip_count():
    hf, tsn = synthetic_pair(11_522, 8, 174, seed=0)
    for a, b in ((tsn, hf), (hf, tsn)):
        fb = fixes_breaks(a, b)
        assert (fb.fixed, fb.broken) == _brute_force(a, b)
        assert fb.fixed_per_class.sum() == fb.fixed and fb.broken_per_class.sum() == fb.broken
    weak = fixes_breaks(tsn, hf)
    assert weak.broken > weak.fixed  # A is the weaker model


def test_class_search_and_class_filter_apply_before_the_top_n():
    a, b = designed_pair()
    names = a.class_names
    pick = find_classes(names, names[7].upper())
    assert 7 in pick
    assert find_classes(names, "") == list(range(16))
    words = names[3].split()
    assert 3 in find_classes(names, f"{words[-1]} {words[0]}")  # every word, any order
    rows = most_improved(a, b, top_k=2, classes=[1, 2, 5, 6])
    assert [r["class_index"] for r in rows] == [2, 6]  # ranked among the chosen classes only
    rows = most_improved(a, b, top_k=None, search=names[11])
    assert [r["class_index"] for r in rows] == [c for c in find_classes(names, names[11]) if c % 4]
    assert len(most_improved(a, b, top_k=None)) == 12


def test_confused_pairs_exact_and_filtered():
    b = bundle(list("abcdefgh"), [0, 0, 0, 1, 1, 2, 2, 2], [1, 1, 0, 0, 2, 1, 1, 0])
    pairs = confused_pairs(b, top_n=None)
    assert [(r["true"], r["predicted"], r["count"]) for r in pairs] == [(0, 1, 2), (2, 1, 2), (1, 0, 1),
                                                                       (1, 2, 1), (2, 0, 1)]
    assert pairs[0]["share"] == pytest.approx(2 / 3) and pairs[0]["support"] == 3
    assert pairs[0]["true_name"] == "cat" and pairs[0]["predicted_name"] == "dog"
    assert len(confused_pairs(b, top_n=2)) == 2
    assert [(r["true"], r["predicted"]) for r in confused_pairs(b, None, min_count=2)] == [(0, 1), (2, 1)]
    assert {(r["true"], r["predicted"]) for r in confused_pairs(b, None, classes=[2])} == {(1, 2), (2, 1), (2, 0)}


def test_compare_confused_pairs_side_by_side():
    ids, labels = list("abcdef"), [0, 0, 0, 1, 1, 2]
    a = bundle(ids, labels, [1, 0, 0, 1, 1, 2])
    b = bundle(ids, labels, [1, 1, 2, 0, 1, 2])
    rows = compare_confused_pairs(a, b)
    by_pair = {(r["true"], r["predicted"]): (r["count_a"], r["count_b"], r["change"]) for r in rows}
    assert by_pair == {(0, 1): (1, 2, -1), (0, 2): (0, 1, -1), (1, 0): (0, 1, -1)}
    assert (rows[0]["true"], rows[0]["predicted"]) == (0, 1)  # the largest count first


def test_cluster_order_puts_mutually_confused_classes_together():
    rng = np.random.default_rng(0)
    groups = [[0, 3, 5], [1, 2, 4, 7]]  # 6 is never confused with anything
    cm = np.diag(np.full(8, 20))
    for g in groups:
        for i in g:
            for j in g:
                if i != j:
                    cm[i, j] = rng.integers(3, 6)
    order = cluster_order(cm).tolist()
    assert sorted(order) == list(range(8)) and order[-1] == 6
    pos = {c: order.index(c) for c in range(8)}
    for g in groups:
        span = [pos[c] for c in g]
        assert max(span) - min(span) == len(g) - 1  # contiguous
    assert cluster_order(cm).tolist() == order  # deterministic


def test_confusion_view_orders_filters_and_keeps_row_totals():
    b = bundle(list("abcdefgh"), [0, 0, 0, 1, 1, 2, 2, 2], [1, 1, 0, 0, 2, 1, 1, 0])
    full = confusion_view(b, normalize=False, order="index")
    np.testing.assert_array_equal(full.matrix, confusion(b))
    assert full.row_labels == CLASSES and full.cols.tolist() == [0, 1, 2]
    cut = confusion_view(b, normalize=True, order=[2, 0, 1], classes=[0, 2])
    assert cut.rows.tolist() == [2, 0] and cut.cols.tolist() == [2, 0, -1] and cut.col_labels[-1] == "other"
    np.testing.assert_allclose(cut.matrix.sum(axis=1), 1.0)
    np.testing.assert_allclose(cut.matrix[0], [0, 1 / 3, 2 / 3])  # eel: 0 eel, 1 cat, 2 dog (= other)
    worst_first = confusion_view(b, order="accuracy")
    assert worst_first.rows.tolist()[0] in (1, 2)  # dog and eel are never right
    with pytest.raises(ValueError, match="unknown order"):
        confusion_view(b, order="alphabet")
    hf, _ = synthetic_pair(3000, 4, 174, seed=1)
    view = confusion_view(hf, order="cluster")
    assert view.matrix.shape == (174, 174) and sorted(view.rows.tolist()) == list(range(174))


def test_same_model_is_named_instead_of_compared():
    a, b = designed_pair()
    assert same_model_warning(a, b) is None
    a.metadata["checkpoint_sha256"] = b.metadata["checkpoint_sha256"] = "ab" * 32
    assert "same checkpoint" in same_model_warning(a, b, "A · hf", "B · hf")
    c = take(a, np.arange(len(a.clip_ids)))
    c.metadata = {}
    assert "identical logits" in same_model_warning(a, c)


def test_top_probability_is_the_largest_softmax_probability_of_each_row():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, (300, 174)).astype(np.float32)
    z[0] = 0.0  # a tie: 1 / 174
    z[1, 5] = 80.0  # a sure one
    got = top_probability(z)
    assert got.dtype == np.float32 and got.shape == (300,)
    np.testing.assert_allclose(got, softmax(z).max(axis=1), rtol=1e-5)
    assert got[0] == pytest.approx(1 / 174) and got[1] == pytest.approx(1.0)
    assert top_probability(np.zeros((4, 0))).tolist() == [0.0] * 4
