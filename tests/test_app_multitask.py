"""A multi-task (verb / noun / action) model in the explorer, end to end through AppTest: Clip lab's three
top-5s, the sidebar's task choice driving Feature space and Class comparison, the model card's EPIC metrics,
attributions of a task's class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _scale_fixtures import FAST_JSON, store_projections
from _app_fixtures import assert_ok, choices, multitask_dir, new_app, plotly_specs, selection, texts  # noqa: F401
from hfnet_core.analysis.task_view import UNLISTED
from hfnet_core.data.synthetic import SYNTH_CLASSES, SYNTH_NOUNS


@pytest.fixture(scope="module")
def projected(multitask_dir):
    """The fixture bundles with stored projections (Feature space draws only stored ones here)."""
    for stem in ("mt_hf_tsn_demo", "tsn_demo"):
        store_projections(multitask_dir / f"{stem}.test.npz", tsne=False)
    return multitask_dir


@pytest.fixture(autouse=True)
def _env(projected, monkeypatch, tmp_path):
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(projected))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    monkeypatch.setenv("HFNET_PROJECTION_SPEC", FAST_JSON)


def _with_multitask_a(task: str | None = None):
    at = new_app().run()
    at.sidebar.selectbox(key="w_model_A").set_value("mt_hf_tsn_demo.safetensors").run()
    if task:
        at.sidebar.segmented_control(key="w_task").set_value(task).run()
    assert_ok(at)
    return at


def test_clip_lab_shows_verb_noun_and_action_top5():
    at = _with_multitask_a()
    sel = selection(at)
    assert sel.a.task == "verb" and sel.b.task is None
    assert sel.a.class_names == list(SYNTH_CLASSES)  # the verb view: the motions, as the plain TSN's classes
    assert sel.comparable  # so the two compare clip by clip
    md = texts(at, "markdown")
    for heading in ("**verb** top-5 (the task the other pages show)", "**noun** top-5",
                    "**action** top-5 · ranked by p(verb) × p(noun)"):
        assert heading in md
    titles = [s["layout"]["meta"]["title"] for s in plotly_specs(at)]
    assert sum("top-5 of A · mt_hf_tsn_demo" in t for t in titles) == 3 and len(titles) == 4
    spec = next(s for s in plotly_specs(at) if s["layout"]["meta"]["title"].startswith("noun top-5"))
    assert set(spec["data"][0]["hovertext"]) <= set(SYNTH_NOUNS) and len(spec["data"][0]["hovertext"]) == 5
    action = next(s for s in plotly_specs(at) if s["layout"]["meta"]["title"].startswith("action top-5"))
    probs = action["data"][0]["x"]
    assert probs == sorted(probs) and all(0 < p <= 1 for p in probs)  # best on top (plotted bottom-up)
    verdicts = texts(at, "warning") + texts(at, "success")
    assert any("The models disagree" in w or "Both models say" in w for w in verdicts)  # verbs vs TSN's motions


def test_the_task_choice_is_shared_by_the_pages_and_the_url():
    at = _with_multitask_a("noun")
    sel = selection(at)
    assert sel.a.task == "noun" and sel.a.class_names == list(SYNTH_NOUNS)
    assert sel.a.bundle.class_names == list(SYNTH_NOUNS) and sel.a.bundle.metadata["task"] == "noun"
    assert choices(at)["task"] == "noun" and at.query_params.get("task") == "noun"
    raw = sel.a.task_source
    assert np.array_equal(sel.a.bundle.labels, raw.labels % len(SYNTH_NOUNS))
    assert any("is shown as its **nouns**" in i for i in texts(at, "info")) and not texts(at, "error")  # Clip lab
    marks = next(c for c in texts(at, "caption") if c.startswith("verb "))  # the sample names its motion and object
    assert [w.split()[0] for w in marks.split(" · ")] == ["verb", "noun", "action"]
    assert any("its object (the noun): **arrow**" in m for m in texts(at, "markdown"))
    at.switch_page("views/class_comparison.py").run()
    assert_ok(at)
    err = " ".join(texts(at, "error"))
    assert "different class lists" in err and "Multi-task models show" in err  # the way out is named
    at.sidebar.segmented_control(key="w_task").set_value("verb").run()
    assert_ok(at)
    assert not texts(at, "error")
    assert any("32 clips matched by id" in c for c in texts(at, "caption"))


def test_feature_space_colours_by_the_shown_task():
    at = _with_multitask_a("action")
    at.switch_page("views/feature_space.py").run()
    assert_ok(at)
    sel = selection(at)
    view = sel.a.bundle
    assert view.class_names[-1] == UNLISTED and len(view.class_names) == 83  # 82 listed pairs + the rest
    assert (view.labels >= 0).all()  # every SynthSomething test pair is a listed action
    maps = [s for s in plotly_specs(at) if "scattergl" in {t.get("type") for t in s["data"]}]
    assert maps, "no feature map drawn"
    at.sidebar.segmented_control(key="w_task").set_value("verb").run()
    assert_ok(at)
    assert selection(at).a.bundle.class_names == list(SYNTH_CLASSES)


def test_model_card_lists_the_tasks_and_the_epic_metrics():
    at = _with_multitask_a()
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    tables = [str(t.value) for t in at.table]
    assert any("82 classes (the verb-noun pairs seen in training)" in t for t in tables)
    assert any("verb′ = verb + log" in t for t in tables)
    epic = next(t for t in at.table if "precision" in str(t.value) and "action" in str(t.value))
    assert list(epic.value.columns) == ["", "verb", "noun", "action"]
    saved = json.loads(Path(selection(at).a.bundle_path).with_suffix(".json").read_text())
    assert epic.value["verb"][0] == f"{100 * saved['epic']['top1']['verb']:.1f} %"  # hfnet eval's numbers
    assert any("EPIC-Kitchens metrics on 32 clips" in c for c in texts(at, "caption"))
    assert any("multi-task HF-TSN" in m for m in texts(at, "markdown"))  # the family name in the header


def test_attributions_target_the_shown_task(monkeypatch):
    """A chosen noun is attributed through the noun head's column; the top-1 of the verb view through the
    verb head's."""
    from hfnet_core.analysis import jobs

    pool = jobs.JobPool(workers=1, mode="thread", name="test-mt-attributions")
    monkeypatch.setattr(jobs, "_shared", pool)
    try:
        at = _with_multitask_a("noun")
        at.switch_page("views/attributions.py").run()
        assert_ok(at)
        at.radio(key="at_target").set_value("class").run()
        assert list(at.selectbox(key="at_class").options) == list(SYNTH_NOUNS)
        at.selectbox(key="at_class").set_value("ellipse").run()
        at.button(key="at_run").click().run()
        for st_ in pool.statuses():
            pool.wait(st_.key, 120)
        at.run()
        assert_ok(at)
        caps = [c.value for c in at.caption if c.value.startswith("Target")]
        assert any(c.startswith("Target (chosen class): **noun: ellipse**") for c in caps), caps
        assert any("has no class 'ellipse'" in w for w in texts(at, "warning"))  # model B: a plain TSN
    finally:
        pool.shutdown(timeout=30)


def test_a_bundle_whose_task_metadata_does_not_fit_is_set_aside(multitask_dir, tmp_path, monkeypatch):
    """Same class names, but the bundle does not say which columns are verbs, nouns and actions: its labels
    cannot be read, so the sidebar says so and the model is shown without it."""
    from _app_fixtures import copy_demo_dir
    from hfnet_core.eval_bundle import EvalBundle

    d = copy_demo_dir(multitask_dir, tmp_path / "ckpt")
    for f in d.glob("mt_hf_tsn_demo.test.proj-*.npz"):
        f.unlink()
    b = EvalBundle.load(d / "mt_hf_tsn_demo.test.npz")
    b.metadata.pop("tasks")
    b.save(d / "mt_hf_tsn_demo.test.npz")
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = _with_multitask_a()
    assert any("does not match the model's verbs, nouns and action classes" in w for w in texts(at, "warning"))
    assert selection(at).a.bundle is None and selection(at).a.task == "verb"
    at.switch_page("views/feature_space.py").run()
    assert_ok(at)


def test_the_backwards_truth_follows_the_task():
    """Backwards, a noun stays the same object; an action's verb reverses and its noun stays."""
    from types import SimpleNamespace

    from app.selection import Selection
    from hfnet_core.data.synthetic import synth_task_spec

    spec = synth_task_spec()

    def sel(task: str, label: str) -> Selection:
        m = SimpleNamespace(spec=spec, task=task, class_names=[])
        return Selection(m, None, SimpleNamespace(label_name=label), None, True, None, 0, "gradcam", "clip_lab")

    assert sel("noun", "arrow").reversed_label == "arrow"
    assert sel("noun", "Moving something from left to right").reversed_label == "Moving something from right to left"
    assert sel("action", "Moving something from left to right arrow").reversed_label == \
        "Moving something from right to left arrow"
    assert sel("action", "Shaking something flag").reversed_label == "Shaking something flag"  # order-free
    assert sel("action", "not an action").reversed_label is None


def test_a_plain_models_errors_do_not_follow_the_other_models_task():
    """A plain TSN's ✗ marks in Feature space count its own mistakes, whatever task the multi-task model in
    the other slot is shown as (the two class lists differ: the plots are drawn, not linked by class)."""
    counts = {}
    for task in ("verb", "noun", "action"):
        at = _with_multitask_a(task)
        at.switch_page("views/feature_space.py").run()
        assert_ok(at)
        b = selection(at).b.bundle
        names = [t["name"] for s in plotly_specs(at) for t in s["data"] if str(t.get("name", "")).startswith("✗ B")]
        assert names, "no ✗ trace for B"
        counts[task] = names[0]
        assert names[0] == f"✗ B is wrong ({int((b.predictions != b.labels).sum()):,})"
    assert len(set(counts.values())) == 1


def test_model_card_explains_the_action_classes_and_the_logged_numbers():
    at = _with_multitask_a("action")
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    cells = [str(v) for t in at.table for v in t.value.to_numpy().ravel()]
    assert f"82 classes + “{UNLISTED}” for the other 14 pairs" in cells  # 16 x 6 = 96 pairs
    header = next(m for m in texts(at, "markdown") if "hf-header" in m)
    assert "16 verbs, 6 nouns, 82 actions" in header
    assert "16 verbs, 6 nouns, 82 actions" in cells  # the card's classes row, not the 104 output columns
