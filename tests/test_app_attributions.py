"""Attributions page (AppTest): both models side by side, every method, layer and target control acts."""

from __future__ import annotations

import json

from _analysis_fixtures import analysis_dir, analysis_env, no_exceptions, page  # noqa: F401 - fixtures


def titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")
            if "at_fig_" in c.proto.id]


def targets(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Target")]


def test_default_run_is_grad_cam_at_the_last_block_for_each_top1(analysis_env):
    at = page("attributions").run()
    no_exceptions(at)
    assert not at.error
    assert at.selectbox(key="at_method").value == "gradcam"
    assert at.selectbox(key="at_layer_A").value == "inception_5b"
    assert "hf.inception_3a" in at.selectbox(key="at_layer_A").options
    assert "hf.inception_3a" not in at.selectbox(key="at_layer_B").options  # TSN has no HF module
    t = titles(at)
    assert len(t) == 2 and t[0].startswith("A · hf_tsn_demo: Grad-CAM at inception_5b<br><sup>for '")
    assert all(c.startswith("Target (top-1)") for c in targets(at)) and len(targets(at)) == 2
    frames = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert len(frames) == 8 and frames[0]["type"] == "image"
    assert len(at.get("download_button")) == 3  # two models + the per-frame chart


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

    at.selectbox(key="at_method").set_value("saliency").run()
    no_exceptions(at)
    assert all(": Saliency<br>" in t for t in titles(at))

    at.selectbox(key="at_method").set_value("ig").run()
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
