"""Attributions page (AppTest): nothing runs before the button; each model's map is a background job of
the shared pool (here a thread-mode pool, so the test decides when a job may go on) with progress, queue
position, cancel, a colour bar and "cached" for a map asked for again; every method, layer and target
control acts; leaving the page or changing the clip's settings cancels this session's jobs."""

from __future__ import annotations

import json
import threading
import time

import pytest

from _analysis_fixtures import analysis_dir, analysis_env, no_exceptions, page  # noqa: F401 - fixtures
from hfnet_core.analysis import attribution_jobs as aj
from hfnet_core.analysis import jobs


@pytest.fixture()
def pool(monkeypatch):
    """A private thread-mode pool as the app's shared pool: one job at a time, deterministic."""
    p = jobs.JobPool(workers=1, mode="thread", name="test-attributions")
    monkeypatch.setattr(jobs, "_shared", p)
    yield p
    p.shutdown(timeout=30)


@pytest.fixture()
def gate(monkeypatch):
    """Jobs report 25 % and then wait until ``gate.set()`` (or their cancellation) before computing."""
    event = threading.Event()
    real = aj.attribution_job

    def gated(ctx, **kwargs):
        ctx.progress(0.25, "waiting for the test")
        while not event.wait(0.01):
            ctx.check()
        return real(ctx, **kwargs)

    monkeypatch.setattr(aj, "attribution_job", gated)
    return event


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "at_fig_" in c.proto.id]


def titles(at) -> list[str]:
    return [c["layout"]["title"]["text"] for c in charts(at)]


def download_labels(at) -> list[str]:
    return [b.label for b in at.get("download_button")]


def targets(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Target")]


def compute(at, pool, timeout: float = 120):
    """Press the button, wait for the jobs, draw the page again."""
    at.button(key="at_run").click().run()
    no_exceptions(at)
    for s in pool.statuses():
        pool.wait(s.key, timeout)
    return at.run()


def test_nothing_is_computed_before_the_button(analysis_env, pool):
    at = page("attributions").run()
    no_exceptions(at)
    assert not at.error and not charts(at)
    assert pool.statuses() == []
    assert at.button(key="at_run").label == "Compute Grad-CAM"
    assert sum("not computed yet" in i.value for i in at.info) == 2  # one per model
    at.selectbox(key="w_method").set_value("ig").run()
    assert pool.statuses() == [] and at.button(key="at_run").label == "Compute Integrated Gradients (16 steps)"


def test_grad_cam_for_each_top1_with_a_colour_bar(analysis_env, pool):
    at = compute(page("attributions").run(), pool)
    no_exceptions(at)
    assert at.selectbox(key="w_method").value == "gradcam"
    assert at.selectbox(key="at_layer_A").value == "inception_5b"
    assert "hf.inception_3a" in at.selectbox(key="at_layer_A").options
    assert "hf.inception_3a" not in at.selectbox(key="at_layer_B").options  # TSN has no HF module
    t = titles(at)
    assert len(t) == 2 and t[0].startswith("A · hf_tsn_demo: Grad-CAM at inception_5b<br><sup>for '")
    assert len(targets(at)) == 2 and all(c.startswith("Target (top-1)") and "· computed in" in c for c in targets(at))
    for fig in charts(at):
        images = [d for d in fig["data"] if d["type"] == "image"]
        scale = [d for d in fig["data"] if d["type"] == "scatter"]
        assert len(images) == 8 and len(scale) == 1
        marker = scale[0]["marker"]
        assert marker["showscale"] is True and (marker["cmin"], marker["cmax"]) == (0, 1)
        assert marker["colorscale"][0][1] == "rgb(0,0,4)" and "attribution" in marker["colorbar"]["title"]["text"]
    labels = download_labels(at)
    for expected in ("PNG image", "SVG (vector)", "Interactive HTML (works offline)", "CSV", "JSON", "NPZ (numpy)"):
        assert expected in labels
    assert [b.label for b in at.get("download_button") if (b.key or "").startswith("dl_attributions_")] == [
        "CSV", "JSON", "NPZ (numpy)"]
    assert any("How much each frame matters" in h.value for h in at.subheader)


def test_progress_queue_position_cancel_and_cached(analysis_env, pool, gate):
    at = page("attributions").run()
    at.selectbox(key="w_method").set_value("ig").run()
    at.slider(key="at_steps").set_value(8).run()
    at.button(key="at_run").click().run()
    no_exceptions(at)
    assert sorted(s.state for s in pool.statuses()) == ["queued", "running"]
    running = next(s.key for s in pool.statuses() if s.state == "running")
    deadline = time.monotonic() + 60
    while pool.status(running).fraction < 0.25 and time.monotonic() < deadline:  # the job reports, then waits
        time.sleep(0.02)
    at.run()  # (in the browser the fragment polls; here the test runs the page again)
    bars = [p.proto.text for p in at.get("progress")]
    assert any("waiting for the test" in b and "25 %" in b for b in bars), bars
    assert any("waiting, 1st in the queue" in b for b in bars), bars
    assert at.button(key="at_cancel").label == "Cancel"
    assert not charts(at)

    at.button(key="at_cancel").click().run()
    no_exceptions(at)
    for s in pool.statuses():
        assert pool.wait(s.key, 30).state == "cancelled"
    at.run()
    assert sum("cancelled. Press the button" in i.value for i in at.info) == 2
    assert not charts(at)

    gate.set()
    at = compute(at, pool)
    assert len(charts(at)) == 2 and all(": Integrated Gradients<br>" in t for t in titles(at))
    assert all("· computed in" in c and "convergence delta" in c for c in targets(at))

    again = page("attributions")  # another session asks for the same maps
    again.session_state["_hf_job_owner"] = "someone else"
    again.run()
    again.selectbox(key="w_method").set_value("ig").run()
    again.slider(key="at_steps").set_value(8).run()
    no_exceptions(again)
    assert len(charts(again)) == 2  # read, not computed: no button needed
    assert all("· cached (computed on " in c for c in targets(again))
    again.button(key="at_run").click().run()
    assert all("· cached (computed on " in c for c in targets(again))
    assert len([s for s in pool.statuses() if s.state == "done"]) == 2  # still the two jobs: nothing recomputed


def test_changing_a_setting_or_leaving_the_page_cancels_this_sessions_jobs(analysis_env, pool, gate):
    at = page("attributions").run()
    at.selectbox(key="w_method").set_value("saliency").run()
    at.button(key="at_run").click().run()
    first = {s.key for s in pool.statuses()}
    assert len(first) == 2 and all(pool.status(k).active for k in first)

    at.selectbox(key="w_method").set_value("gradcam").run()  # another method: other jobs; the old ones stop
    no_exceptions(at)
    assert all(pool.wait(k, 30).state == "cancelled" for k in first)
    at.button(key="at_run").click().run()
    second = {s.key for s in pool.statuses()} - first
    assert len(second) == 2 and all(pool.status(k).active for k in second)

    at.switch_page("views/model_cards.py").run()  # leaving the page
    no_exceptions(at)
    assert all(pool.wait(k, 30).state == "cancelled" for k in second)
    gate.set()


def test_a_job_another_session_owns_goes_on_when_one_leaves(analysis_env, pool, gate):
    one, two = page("attributions"), page("attributions")
    two.session_state["_hf_job_owner"] = "second session"
    for at in (one, two):
        at.run()
        at.selectbox(key="w_method").set_value("saliency").run()
        at.button(key="at_run").click().run()
    keys = {s.key for s in pool.statuses()}
    assert len(keys) == 2  # the same two maps: one job each, two owners
    one.switch_page("views/model_cards.py").run()
    assert all(pool.status(k).active for k in keys)  # the second session still wants them
    gate.set()
    assert all(pool.wait(k, 120).state == "done" for k in keys)


def test_a_failed_job_shows_its_one_line_error(analysis_env, pool, monkeypatch):
    def broken(ctx, **kwargs):
        raise ValueError("Grad-CAM needs a layer (one of layer_choices(model))")

    monkeypatch.setattr(aj, "attribution_job", broken)
    at = compute(page("attributions").run(), pool)
    no_exceptions(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and all("Grad-CAM failed for" in e and "needs a layer" in e for e in errors)
    assert all("\n" not in e for e in errors)


def test_methods_layers_targets_and_opacity_change_the_output(analysis_env, pool):
    at = compute(page("attributions").run(), pool)
    first = charts(at)[0]
    at.slider(key="at_alpha").set_value(0.2).run()
    assert charts(at)[0] != first and len(pool.statuses()) == 2  # opacity is drawing, not computing

    at.selectbox(key="at_layer_A").set_value("hf.inception_4a").run()
    at = compute(at, pool)
    assert titles(at)[0].startswith("A · hf_tsn_demo: Grad-CAM at hf.inception_4a")
    at.selectbox(key="at_layer_B").set_value("base_model.inception_3a_1x1_relu").run()
    at = compute(at, pool)
    assert "inception_3a_1x1_relu" in titles(at)[1]

    at.selectbox(key="w_method").set_value("saliency").run()
    at = compute(at, pool)
    assert all(": Saliency<br>" in t for t in titles(at))

    at.radio(key="at_target").set_value("class").run()
    at.selectbox(key="at_class").set_value("Shaking something").run()
    at = compute(at, pool)
    assert all(c.startswith("Target (chosen class): **Shaking something**") for c in targets(at))
    assert all(t.endswith("for 'Shaking something'</sup>") for t in titles(at))

    at.radio(key="at_target").set_value("true").run()
    at = compute(at, pool)
    assert all(c.startswith("Target (true label)") for c in targets(at))


def test_backwards_rows_follow_the_selection(analysis_env, pool):
    """Reversal is the selection's, not the page's: on here, each model gets a second row of maps for the
    backwards clip, aligned to the forward frames, and the true-label target is the reversed pair."""
    at = page("attributions")
    at.query_params["rev"] = "1"
    at.run()
    at.selectbox(key="w_method").set_value("saliency").run()
    at = compute(at, pool)
    assert at.toggle(key="w_reverse").value is True
    t = titles(at)
    assert len(t) == 4 and sum("· backwards" in x for x in t) == 2
    assert len(back_captions(at)) == 2
    specs = charts(at)
    frames_fwd = [a["text"] for a in specs[0]["layout"]["annotations"]]
    frames_bwd = [a["text"] for a in specs[1]["layout"]["annotations"] if a["text"].startswith("frame")]
    assert frames_bwd == [f for f in frames_fwd if f.startswith("frame")]  # the same source frames, in order
    at.radio(key="at_target").set_value("true").run()
    at = compute(at, pool)
    assert any("Target (true label): **Moving something from right to left**" in c for c in back_captions(at))


def back_captions(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Backwards (aligned")]
