"""Class comparison page (AppTest): Fig. 3a bars, drill-down to flipped clips, accuracy, confusion."""

from __future__ import annotations

import json

from _analysis_fixtures import (  # noqa: F401 - fixtures
    analysis_dir,
    analysis_env,
    full_app,
    make_mismatch_dir,
    no_exceptions,
    page,
)
from hfnet_core.data.synthetic import SYNTH_CLASSES


def spec(at, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(key) or key in c.proto.id:
            return json.loads(c.proto.spec)
    raise KeyError(key)


def open_buttons(at) -> list[str]:
    return [b.label for b in at.button if b.label.startswith("Open")]


def test_default_run_shows_fig3a_and_the_top_class_clips(analysis_env):
    at = page("class_comparison").run()
    no_exceptions(at)
    assert not at.error
    bars = spec(at, "cc_bars")["data"][0]
    # Plotly draws the first category at the bottom: the most improved class is last.
    assert bars["y"][-1] == f"{SYNTH_CLASSES[3]} / {SYNTH_CLASSES[2]}"
    assert len(bars["y"]) == 10 and bars["customdata"][-1] == [3]
    assert at.metric[0].value == "23 / 1"
    assert at.selectbox(key="cc_class").value == 3
    assert open_buttons(at) == [f"Open synth/test/{i:06d} in Clip lab" for i in (3, 19, 35)]
    table = at.dataframe[0].value
    assert list(table["B · tsn_demo predicts"]) == [SYNTH_CLASSES[2]] * 3
    assert spec(at, "cc_accuracy")["data"][0]["name"] == "A · hf_tsn_demo"
    assert [spec(at, f"cc_confusion_{s}")["layout"]["title"]["text"] for s in "AB"] == [
        "A · hf_tsn_demo", "B · tsn_demo"]
    assert sum(b.label == "PNG image" for b in at.get("download_button")) == 4  # every figure can be downloaded


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
