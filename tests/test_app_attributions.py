"""Attributions page (AppTest): both models side by side, every method, layer and target control acts."""

from __future__ import annotations

import json

from _analysis_fixtures import analysis_dir, analysis_env, no_exceptions, page  # noqa: F401 - fixtures


def titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")
            if "at_fig_" in c.proto.id]


def downloads(at) -> list[tuple[str, str]]:
    """(key, label) of the page's download buttons (their files are built on click: tests/test_app_downloads.py)."""
    return [(b.key or "", b.label) for b in at.get("download_button")]


def targets(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Target")]


def test_default_run_is_grad_cam_at_the_last_block_for_each_top1(analysis_env):
    at = page("attributions").run()
    no_exceptions(at)
    assert not at.error
    assert at.selectbox(key="w_method").value == "gradcam"
    assert at.selectbox(key="at_layer_A").value == "inception_5b"
    assert "hf.inception_3a" in at.selectbox(key="at_layer_A").options
    assert "hf.inception_3a" not in at.selectbox(key="at_layer_B").options  # TSN has no HF module
    t = titles(at)
    assert len(t) == 2 and t[0].startswith("A · hf_tsn_demo: Grad-CAM at inception_5b<br><sup>for '")
    assert all(c.startswith("Target (top-1)") for c in targets(at)) and len(targets(at)) == 2
    frames = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert len(frames) == 8 and frames[0]["type"] == "image"
    dl = downloads(at)  # two model figures + the per-frame chart (PNG / SVG / HTML each) + the maps as data
    assert sum(label == "PNG image" for _, label in dl) == 3 and sum(label == "SVG (vector)" for _, label in dl) == 3
    assert [label for key, label in dl if key.startswith("dl_attributions_")] == ["CSV", "JSON", "NPZ (numpy)"]


def test_methods_layers_targets_and_opacity_change_the_output(analysis_env):
    at = page("attributions").run()
    first = at.get("plotly_chart")[0].proto.spec
    at.slider(key="at_alpha").set_value(0.2).run()
    assert at.get("plotly_chart")[0].proto.spec != first

    at.selectbox(key="at_layer_A").set_value("hf.inception_4a").run()
    no_exceptions(at)
    assert titles(at)[0].startswith("A · hf_tsn_demo: Grad-CAM at hf.inception_4a")
    at.selectbox(key="at_layer_B").set_value("base_model.inception_3a_1x1_relu").run()
    no_exceptions(at)
    assert "inception_3a_1x1_relu" in titles(at)[1]

    at.selectbox(key="w_method").set_value("saliency").run()
    no_exceptions(at)
    assert all(": Saliency<br>" in t for t in titles(at))

    at.selectbox(key="w_method").set_value("ig").run()
    at.slider(key="at_steps").set_value(8).run()
    no_exceptions(at)
    assert all(": Integrated Gradients<br>" in t for t in titles(at))

    at.radio(key="at_target").set_value("class").run()
    at.selectbox(key="at_class").set_value("Shaking something").run()
    no_exceptions(at)
    assert all(c.startswith("Target (chosen class): **Shaking something**") for c in targets(at))
    assert all(t.endswith("for 'Shaking something'</sup>") for t in titles(at))

    at.radio(key="at_target").set_value("true").run()
    no_exceptions(at)
    assert all(c.startswith("Target (true label)") for c in targets(at))


def test_backwards_rows_follow_the_selection(analysis_env):
    """Reversal is the selection's, not the page's: on here, each model gets a second row of maps for the
    backwards clip, aligned to the forward frames, and the true-label target is the reversed pair."""
    at = page("attributions")
    at.query_params["rev"] = "1"
    at.run()
    no_exceptions(at)
    assert at.toggle(key="w_reverse").value is True
    t = titles(at)
    assert len(t) == 4 and sum("· backwards" in x for x in t) == 2
    back = [c.value for c in at.caption if c.value.startswith("Backwards (aligned")]
    assert len(back) == 2
    frames_fwd = [a["text"] for a in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]]
    frames_bwd = [a["text"] for a in json.loads(at.get("plotly_chart")[1].proto.spec)["layout"]["annotations"]
                  if a["text"].startswith("frame")]
    assert frames_bwd == [f for f in frames_fwd if f.startswith("frame")]  # the same source frames, in order
    at.radio(key="at_target").set_value("true").run()
    no_exceptions(at)
    assert any("Target (true label): **Moving something from right to left**" in c
               for c in back_captions(at))


def back_captions(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Backwards (aligned")]
