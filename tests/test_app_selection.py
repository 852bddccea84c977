"""The one selection (app/selection.py): mirrored in the URL, restored from it, kept across pages; the
header and the guided tour (app/start.py) that drive it."""

from __future__ import annotations

import pytest

from _app_fixtures import app_env, assert_ok, choices, demo_dir, new_app, plotly_specs, selection, texts  # noqa: F401

pytestmark = pytest.mark.usefixtures("app_env")


def _player(at) -> dict:
    return next(s for s in plotly_specs(at) if s.get("frames") and s["layout"].get("sliders"))


def test_url_round_trip():
    """Everything a user chose goes into the URL; a new session opened on that URL (a reload, a shared link)
    comes back with the same models, clip, reversal, layer, frame pair and method."""
    at = new_app().run()
    at.sidebar.selectbox(key="w_sample").set_value("04_rotating_sth_clockwise.mp4").run()
    at.sidebar.selectbox(key="w_model_B").set_value("hf_tsn_demo.safetensors").run()
    at.toggle(key="w_reverse").set_value(True).run()
    at.switch_page("views/gate_maps.py").run()
    at.button_group[0].set_value("inception_3b").run()
    at.select_slider(key="w_pair").set_value(3).run()
    at.radio(key="w_gate_model").set_value("B").run()
    at.switch_page("views/attributions.py").run()
    at.selectbox(key="w_method").set_value("saliency").run()
    assert_ok(at)
    link = dict(at.query_params)
    assert link == {"a": "hf_tsn_demo.safetensors", "b": "hf_tsn_demo.safetensors", "src": "sample",
                    "clip": "04_rotating_sth_clockwise.mp4", "rev": "1", "layer": "inception_3b", "pair": "3",
                    "method": "saliency", "gate": "B"}

    again = new_app()
    again.query_params.update(link)
    again.run()
    assert_ok(again)
    sel = selection(again)
    assert sel.clip.name == "Rotating something clockwise (#8)" and sel.reverse
    assert sel.b.name == "hf_tsn_demo" and sel.method == "saliency" and sel.layer == "inception_3b"
    assert sel.pair == 3 and sel.reversed_label == "Rotating something counter-clockwise"
    assert again.toggle(key="w_reverse").value is True
    again.switch_page("views/gate_maps.py").run()
    assert again.button_group[0].value == "inception_3b"
    assert _player(again)["layout"]["sliders"][0]["active"] == 3
    assert any(m.startswith("**B · hf_tsn_demo** on") for m in texts(again, "markdown"))
    assert dict(again.query_params) == link  # and the link stays what it was


def test_reversal_is_kept_across_pages():
    at = new_app().run()
    at.toggle(key="w_reverse").set_value(True).run()
    at.switch_page("views/gate_maps.py").run()
    assert at.toggle(key="w_reverse").value is True
    assert len([a for a in _player(at)["layout"]["annotations"] if a["text"].endswith("backwards")]) == 1
    at.toggle(key="w_reverse").set_value(False).run()  # switched off on another page ...
    at.switch_page("views/clip_lab.py").run()
    assert at.toggle(key="w_reverse").value is False  # ... it is off everywhere
    assert len(plotly_specs(at)) == 2 and "rev" not in at.query_params


def test_models_and_malformed_values_from_a_link():
    at = new_app()
    at.query_params.update({"a": "tsn_demo.safetensors", "b": "none", "pair": "abc", "method": "evil",
                            "src": "weird", "layer": "zz", "rev": "maybe"})
    at.run()
    assert_ok(at)
    sel = selection(at)
    assert sel.a.name == "tsn_demo" and sel.b is None
    assert sel.pair == 0 and sel.method == "gradcam" and not sel.reverse and sel.clip.source == "sample"
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)  # an unknown layer falls back to a real one (here: none, TSN has no gates)


def test_a_link_cannot_open_files_outside_the_roots():
    at = new_app()
    at.query_params.update({"a": "../../../etc/passwd", "src": "root", "clip": "../../etc/passwd"})
    at.run()
    assert_ok(at)
    assert any("outside the checkpoint folder" in e for e in texts(at.sidebar, "error"))
    assert selection(at).a is None and selection(at).b is not None  # the session goes on with B
    assert choices(at)["clip_source"] == "sample"  # no data root here: "root" is not a source to restore


def test_a_bundle_clip_link_takes_its_path_from_the_bundle():
    at = new_app()
    at.query_params.update({"src": "bundle", "clip": "synth/test/000001"})
    at.run()
    assert_ok(at)
    assert choices(at)["bundle_clip"] == {"clip_id": "synth/test/000001", "path": None}
    assert selection(at).clip.label_name == "Moving something from right to left"


def test_guided_tour():
    """Three steps on the demo pair: a clip, the same clip backwards, the gate maps - each a button."""
    at = new_app().run()
    assert any("New here?" in c for c in texts(at, "caption"))
    at.sidebar.selectbox(key="w_sample").set_value("14_holding_sth_still.mp4").run()
    at.button(key="tour_start").click().run()
    assert_ok(at)
    sel = selection(at)
    assert choices(at)["tour"] == 1 and sel.clip.label_name == "Moving something from left to right"
    assert not sel.reverse
    assert any(m.startswith("**Tour 1/3") for m in texts(at, "markdown"))
    at.button(key="tour_next").click().run()
    assert_ok(at)
    assert choices(at)["tour"] == 2 and selection(at).reverse
    step2 = next(m for m in texts(at, "markdown") if m.startswith("**Tour 2/3"))
    assert "*Moving something from right to left*" in step2 and "**A · hf_tsn_demo** (HF-TSN)" in step2
    assert at.table[0].value["order"].tolist() == ["seen", "blind"]  # the reversal table is on the page
    at.button(key="tour_next").click().run()
    assert_ok(at)
    assert choices(at)["tour"] == 3 and selection(at).page == "gate_maps" and selection(at).reverse
    assert any(m.startswith("**Tour 3/3") for m in texts(at, "markdown"))
    assert sum(a["text"].endswith("backwards") for a in _player(at)["layout"]["annotations"]) == 1
    at.button(key="tour_end").click().run()
    assert choices(at)["tour"] == 0


def test_no_tour_without_a_demo_setting(tmp_path, monkeypatch):
    """Without samples whose classes the models know, the tour is not offered."""
    monkeypatch.setenv("HFNET_SAMPLES_DIR", str(tmp_path / "none"))
    at = new_app().run()
    assert_ok(at)
    assert not [b for b in at.button if b.key == "tour_start"]
    assert selection(at).clip.name == "synth/test/000000"  # generated clips stand in for the samples
