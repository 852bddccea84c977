"""Class comparison page (AppTest): Fig. 3a bars, drill-down to flipped clips, fixes / breaks, confused pairs,
accuracy and the confusion heatmap - on the hand-made 16-class pair and at Something's scale (174 classes,
2,400 clips from ``synthetic_pair``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _analysis_fixtures import (  # noqa: F401 - fixtures
    analysis_dir,
    analysis_env,
    full_app,
    make_mismatch_dir,
    no_exceptions,
    page,
)
from _app_fixtures import plotly_array
from app.analysis_figures import unique_labels
from hfnet_core.analysis.comparison import (align, cluster_order, compare_confused_pairs, confused_pairs, confusion,
                                            find_classes, fixes_breaks, most_improved, take)
from hfnet_core.analysis.synthetic_bundles import synthetic_pair
from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES
from hfnet_core.model import build_model

SCALE_CLIPS, SCALE_CLASSES = 2400, 174


def spec(at, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(key) or key in c.proto.id:
            return json.loads(c.proto.spec)
    raise KeyError(key)


def open_buttons(at) -> list[str]:
    return [b.label for b in at.button if b.label.startswith("Open")]


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frame(at, which: str):
    """A pairs table: "A" / "B" (each model's most confused pairs) or "changed"."""
    pairs = [d.value for d in at.dataframe if "share of the class" in d.value.columns]
    if which == "changed":
        return next(d.value for d in at.dataframe if "change" in d.value.columns)
    return pairs["AB".index(which)]


def download_labels(at) -> set[str]:
    return {b.label for b in at.get("download_button")}


def test_default_run_shows_fig3a_and_the_top_class_clips(analysis_env):
    at = page("class_comparison").run()
    no_exceptions(at)
    assert not at.error
    bars = spec(at, "cc_bars")["data"][0]
    # Plotly draws the first category at the bottom: the most improved class is last.
    assert bars["y"][-1] == f"{SYNTH_CLASSES[3]} / {SYNTH_CLASSES[2]}"
    assert len(bars["y"]) == 10 and bars["customdata"][-1] == [3]
    m = metrics(at)
    assert m["Clips A · hf_tsn_demo fixes"] == "23" and m["Clips A · hf_tsn_demo breaks"] == "1"
    assert m["Net gain of A · hf_tsn_demo over B · tsn_demo"] == "+22"
    assert at.selectbox(key="cc_class").value == 3
    assert open_buttons(at) == [f"Open synth/test/{i:06d} in Clip lab" for i in (3, 19, 35)]
    table = at.dataframe[0].value
    assert list(table["B · tsn_demo predicts"]) == [SYNTH_CLASSES[2]] * 3
    assert spec(at, "cc_accuracy")["data"][0]["name"] == "A · hf_tsn_demo"
    assert spec(at, "cc_confusion_A")["layout"]["title"]["text"].startswith("Confusion of A · hf_tsn_demo (HF-TSN)")
    # every figure offers its image files (kaleido builds the PNG / SVG on click)
    assert {"PNG image", "SVG (vector)", "Interactive HTML (works offline)"} <= download_labels(at)
    assert sum(k.startswith("dl_cc_") and k.endswith("_0") for k in (b.key or "" for b in at.get("download_button"))) \
        == 3  # Fig. 3a, accuracy, confusion: each has its own menu


def test_widgets_change_the_output(analysis_env):
    at = page("class_comparison").run()
    at.selectbox(key="cc_class").set_value(15).run()
    no_exceptions(at)
    assert open_buttons(at) == ["Open synth/test/000031 in Clip lab", "Open synth/test/000047 in Clip lab"]
    assert any("2 clips of 'Shaking something'" in m.value for m in at.markdown)
    colours = spec(at, "cc_bars")["data"][0]["marker"]["color"]
    assert colours.count("#d62728") == 1  # the chosen bar is highlighted

    at.slider(key="cc_top_k").set_value(3).run()
    assert len(spec(at, "cc_bars")["data"][0]["y"]) == 3

    assert spec(at, "cc_confusion_A")["data"][0]["zmax"] == 1
    at.checkbox(key="cc_normalize").uncheck().run()
    heat = spec(at, "cc_confusion_A")["data"][0]
    assert "zmax" not in heat and heat["colorbar"]["title"]["text"] == "clips"
    at.radio(key="cc_heat_model").set_value("B").run()
    assert spec(at, "cc_confusion_B")["layout"]["title"]["text"].startswith("Confusion of B · tsn_demo (TSN)")

    order = spec(at, "cc_accuracy")["data"][0]["x"]
    at.checkbox(key="cc_sort_gain").check().run()
    assert spec(at, "cc_accuracy")["data"][0]["x"] != order


def test_open_a_flipped_clip_in_clip_lab(analysis_env):
    at = full_app()
    at.switch_page("views/class_comparison.py").run()
    no_exceptions(at)
    at.button(key="cc_open_synth/test/000019").click().run()
    no_exceptions(at)
    assert at.session_state["_hf_choices"]["bundle_clip"]["clip_id"] == "synth/test/000019"
    assert at.session_state["_hf_choices"]["clip_source"] == "bundle"
    assert at.session_state["_hf_selection"].clip.name == "synth/test/000019"  # opened in Clip lab


def test_different_class_lists_give_a_specific_error(tmp_path, monkeypatch):
    d = make_mismatch_dir(tmp_path / "mismatch")
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = page("class_comparison").run()
    no_exceptions(at)
    assert len(at.error) == 1
    msg = at.error[0].value
    assert "different order" in msg and f"'{SYNTH_CLASSES[0]}' in A · hf_tsn_demo" in msg
    assert not at.get("plotly_chart")


def test_a_missing_bundle_is_explained(tmp_path, monkeypatch, analysis_dir):
    d = tmp_path / "nobundle"
    d.mkdir()
    for name in ("hf_tsn_demo.safetensors", "tsn_demo.safetensors", "hf_tsn_demo.test.npz"):
        (d / name).write_bytes((analysis_dir / name).read_bytes())
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = page("class_comparison").run()
    no_exceptions(at)
    assert any("B · tsn_demo has no eval bundle" in w.value for w in at.warning)


# --- at Something's scale: 174 classes, 2,400 clips ---------------------------------------------------

@pytest.fixture(scope="module")
def scale_pair():
    return synthetic_pair(SCALE_CLIPS, dim=16, k=SCALE_CLASSES, seed=5)


@pytest.fixture(scope="module")
def scale_dir(tmp_path_factory, scale_pair):
    """Two small 174-class checkpoints (the app checks a bundle's classes against its model's) with the
    synthetic bundles: A (hf_tsn_big) is the stronger model."""
    d = tmp_path_factory.mktemp("scale")
    for (stem, name), bundle in zip((("hf_tsn_big", "hf_tsn_bninception_demo"), ("tsn_big", "tsn_bninception_demo")),
                                    scale_pair):
        torch.manual_seed(0)
        model = build_model(name, width_mult=0.25, input_size=64, num_segments=8, num_classes=SCALE_CLASSES).eval()
        save_checkpoint(d / f"{stem}.safetensors", model, list(bundle.class_names), training={"note": "random"})
        bundle.save(d / f"{stem}.test.npz")
    return d


@pytest.fixture()
def scale_env(scale_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(scale_dir))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield scale_dir
    torch.set_num_threads(before)


def scale_page(a: str | None = None, b: str | None = None):
    at = page("class_comparison")
    if a:
        at.query_params["a"] = a
    if b:
        at.query_params["b"] = b
    return at.run()


def test_scale_fig3a_top_n_search_and_names_in_every_caption(scale_env, scale_pair):
    ba, bb = scale_pair
    at = scale_page()
    no_exceptions(at)
    assert not at.error and not at.warning
    page_caption = at.caption[0].value
    assert "A = hf_tsn_big (HF-TSN) and B = tsn_big (TSN)" in page_caption
    assert f"{SCALE_CLIPS} clips matched by id ({SCALE_CLIPS} in A · hf_tsn_big, {SCALE_CLIPS} in B · tsn_big)" in \
        " ".join(c.value for c in at.caption)
    bars = spec(at, "cc_bars")
    expected = most_improved(ba, bb, top_k=10)
    assert bars["data"][0]["y"] == [r["label"] for r in reversed(expected)]
    assert "A · hf_tsn_big" in bars["layout"]["title"]["text"] and "B · tsn_big" in bars["layout"]["title"]["text"]
    for key in ("cc_bars", "cc_accuracy", "cc_confusion_A"):
        text = json.dumps(spec(at, key)["layout"])
        assert "HF-TSN, B = TSN" not in text and "hf_tsn_big" in text

    at.slider(key="cc_top_k").set_value(25).run()
    assert len(spec(at, "cc_bars")["data"][0]["y"]) == 25

    at.text_input(key="cc_search").input("REVERSED 01").run()
    no_exceptions(at)
    wanted = [i for i, n in enumerate(ba.class_names) if "(reversed)" in n and "01" in n]
    assert any(f"{len(wanted)} of {SCALE_CLASSES} classes match" in c.value for c in at.caption)
    ranked = most_improved(ba, bb, top_k=25, classes=wanted)
    got = spec(at, "cc_bars")["data"][0]
    assert [c[0] for c in got["customdata"]] == [r["class_index"] for r in reversed(ranked)]
    assert all("(reversed)" in y.split(" / ")[0] for y in got["y"])
    acc_x = spec(at, "cc_accuracy")["data"][0]["x"]
    assert len(acc_x) == len(wanted)  # the accuracy chart follows the search

    at.text_input(key="cc_search").input("no such words").run()
    no_exceptions(at)
    assert any("No class name contains every word" in w.value for w in at.warning)


def test_scale_fixes_and_breaks_count_every_clip_when_a_is_the_weaker_model(scale_env, scale_pair):
    """The regression of issue 9: with the weaker model as A, breaks in classes where A fixes nothing
    were dropped. The page's numbers are the counts over every clip."""
    strong, weak = scale_pair
    at = scale_page("tsn_big.safetensors", "hf_tsn_big.safetensors")
    no_exceptions(at)
    fb = fixes_breaks(weak, strong)
    y = strong.labels
    broken_by_hand = int(((strong.predictions == y) & (weak.predictions != y)).sum())
    fixed_by_hand = int(((weak.predictions == y) & (strong.predictions != y)).sum())
    assert (fb.broken, fb.fixed) == (broken_by_hand, fixed_by_hand) and fb.broken > fb.fixed
    partial = sum(r["n_worsened"] for r in most_improved(weak, strong, top_k=None))
    assert partial < broken_by_hand  # what the old page showed
    m = metrics(at)
    assert m["Clips A · tsn_big fixes"] == str(fixed_by_hand)
    assert m["Clips A · tsn_big breaks"] == str(broken_by_hand)
    assert m["Net gain of A · tsn_big over B · hf_tsn_big"] == f"{fixed_by_hand - broken_by_hand:+d}"


def test_scale_confused_pair_tables(scale_env, scale_pair):
    ba, bb = scale_pair
    at = scale_page()
    no_exceptions(at)
    al = align(ba, bb)
    sa, sb = take(ba, al.rows_a), take(bb, al.rows_b)
    for slot, bundle in (("A", sa), ("B", sb)):
        table = frame(at, slot)
        expected = confused_pairs(bundle, 15)
        assert len(table) == 15
        assert list(table["true class"]) == [p["true_name"] for p in expected]
        assert list(table["predicted as"]) == [p["predicted_name"] for p in expected]
        assert list(table["clips"]) == [p["count"] for p in expected]
    changed = frame(at, "changed")
    rows = compare_confused_pairs(sa, sb, None)
    biggest = max(abs(r["change"]) for r in rows)
    assert abs(int(changed["change"].iloc[0])) == biggest
    assert list(changed.columns[2:4]) == ["A · hf_tsn_big", "B · tsn_big"]
    assert (np.abs(changed["change"].to_numpy()) > 0).all()

    at.slider(key="cc_pairs_n").set_value(30).run()
    assert len(frame(at, "A")) == 30

    at.text_input(key="cc_search").input("action 007").run()
    no_exceptions(at)
    table = frame(at, "A")
    assert len(table) and all("007" in t or "007" in p for t, p in zip(table["true class"], table["predicted as"]))


def test_scale_heatmap_clustered_filtered_and_labelled(scale_env, scale_pair):
    ba, bb = scale_pair
    at = scale_page()
    no_exceptions(at)
    heat = spec(at, "cc_confusion_A")
    names = list(ba.class_names)
    al = align(ba, bb)
    sa, sb = take(ba, al.rows_a), take(bb, al.rows_b)
    order = cluster_order(confusion(sa) + confusion(sb))
    assert heat["data"][0]["y"] == unique_labels([names[c] for c in order])  # clustered, every class
    assert len(heat["data"][0]["x"]) == SCALE_CLASSES
    assert heat["layout"]["yaxis"]["tickfont"]["size"] == 8 and "tickvals" not in heat["layout"]["yaxis"]
    assert heat["layout"]["height"] >= 1000  # 174 rows get room (the chart spans the page)
    assert any("drag a box to zoom in" in c.value for c in at.caption)

    at.selectbox(key="cc_order").set_value("index").run()
    assert spec(at, "cc_confusion_A")["data"][0]["y"] == unique_labels(names)

    picked = [4, 5, 40, 41, 100]
    at.multiselect(key="cc_heat_classes").set_value(picked).run()
    no_exceptions(at)
    heat = spec(at, "cc_confusion_A")
    z = plotly_array(heat["data"][0]["z"])
    assert heat["data"][0]["y"] == [names[c] for c in picked]
    assert heat["data"][0]["x"] == [names[c] for c in picked] + ["(other classes)"]
    assert heat["layout"]["yaxis"]["tickvals"] == [names[c] for c in picked]  # few classes: every label shown
    np.testing.assert_allclose(np.asarray(z).sum(axis=1), 1.0, atol=1e-9)  # rows are shares, "other" included
    counts = plotly_array(heat["data"][0]["customdata"])
    cm = confusion(sa)
    assert counts[0, 0] == cm[4, 4] and counts[0, 1] == cm[4, 5] and counts[0, -1] == cm[4].sum() - cm[4, picked].sum()
    assert "5 of 174 classes" in heat["layout"]["title"]["text"]

    at.checkbox(key="cc_hide_diag").check().run()
    z = plotly_array(spec(at, "cc_confusion_A")["data"][0]["z"])
    assert np.isnan(np.diag(np.asarray(z, dtype=float)[:, :5])).all()

    at.text_input(key="cc_search").input("action 01").run()
    at.button(key="cc_heat_from_search").click().run()
    no_exceptions(at)
    found = find_classes(names, "action 01")  # every word, anywhere: "001", "010", "101"...
    assert 10 in found and 1 in found and 2 not in found
    assert at.multiselect(key="cc_heat_classes").value == found
    assert len(spec(at, "cc_confusion_A")["data"][0]["y"]) == len(found)


def test_scale_same_model_twice_is_a_clear_warning(scale_env):
    at = scale_page("hf_tsn_big.safetensors", "hf_tsn_big.safetensors")
    no_exceptions(at)
    assert any("are the same checkpoint" in w.value and "A · hf_tsn_big" in w.value and "B · hf_tsn_big" in w.value
               for w in at.warning)
    assert not at.get("plotly_chart")  # no empty charts


def test_long_class_names_stay_distinct_on_the_axes():
    """Plotly merges equal category labels: shortened names must stay distinct and keep what tells them apart."""
    names = ["Pretending to put something into something", "Pretending to put something onto something",
             "Pretending to put something underneath something", "Pushing something"]
    labels = unique_labels(names, 24)  # all three "Pretending…" share their first 24 characters
    assert len(set(labels)) == 4 and all(len(x) <= 24 for x in labels)
    assert labels[3] == "Pushing something" and labels[0].startswith("Pretendin")
    assert labels[0].endswith("…into something") and labels[1].endswith("…onto something")  # just past the shared end
    same = ["Moving something number 001 of a long list", "Moving something number 002 of a long list"]
    assert unique_labels(same, 24) == ["Moving…1 of a long list", "Moving…2 of a long list"]
