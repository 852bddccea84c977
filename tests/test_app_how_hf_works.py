"""How HF works (teaching page) through AppTest: the gate sliders drive Eq. 1 and conservation holds."""

from __future__ import annotations

import pytest

from _app_fixtures import app_env, assert_ok, demo_dir, new_app, plotly_specs  # noqa: F401

pytestmark = pytest.mark.usefixtures("app_env")


def _page():
    at = new_app().run()
    at.switch_page("views/how_hf_works.py").run()
    assert_ok(at)
    return at


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_default_and_conservation():
    at = _page()
    m = _metrics(at)
    before, after = m["Σ over frames and positions, before"], m["… after HF"]
    assert before == after
    assert float(m["largest change of Σₜ at any position"]) < 1e-12
    assert len(plotly_specs(at)) == 2
    assert any("mostly does **averaging**" in md.value for md in at.markdown)


def test_gate_slider_changes_output():
    at = _page()
    first = plotly_specs(at)[0]["data"][1]["z"]
    at.slider(key="teach_g").set_value(-0.8).run()
    assert_ok(at)
    assert plotly_specs(at)[0]["data"][1]["z"] != first
    assert any("mostly does **differencing**" in md.value for md in at.markdown)
    assert float(_metrics(at)["largest change of Σₜ at any position"]) < 1e-12


def test_one_gate_per_pair():
    at = _page()
    at.toggle(key="teach_per_pair").set_value(True).run()
    assert_ok(at)
    keys = [s.key for s in at.slider]
    assert {"teach_g0", "teach_g1", "teach_g2", "teach_g3"} <= set(keys)
    at.slider(key="teach_g2").set_value(-1.0).run()
    assert_ok(at)
    assert float(_metrics(at)["largest change of Σₜ at any position"]) < 1e-12
    assert "differences between 'before HF' and 'after HF'" not in str(at.code[0].value)
    assert "largest difference: 0.0e+00" in at.code[0].value or "e-1" in at.code[0].value
