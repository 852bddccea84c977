"""Integrated Gradients in batches (equal to Captum's), its memory plan, progress and cancellation, and
attribution jobs cached on disk by (checkpoint, clip, method, target, steps, layer)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from _app_fixtures import make_model
from hfnet_core.analysis import attribution_jobs as aj
from hfnet_core.analysis import attributions as attr
from hfnet_core.analysis.jobs import JobCancelled, JobPool
from hfnet_core.checkpoint import file_sha256, save_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES

T, S = 8, 32


@pytest.fixture(scope="module")
def model():
    m = make_model("hf_tsn_bninception_demo", seed=3, size=S)
    with torch.no_grad():  # a random classifier's logits barely move; make the attributions readable
        m.head.new_fc.weight.mul_(1e3)
    return m


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(1, T, 3, S, S, generator=torch.Generator().manual_seed(1)) * 60.0


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
                                    "riemann_middle"])
def test_integration_rules_are_captums(method):
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters(method)
    a, w = attr.ig_alphas(7, method)
    np.testing.assert_allclose(a, alphas(7), atol=1e-7)  # (Captum builds some in float32)
    np.testing.assert_allclose(w, step_sizes(7), atol=1e-12)
    with pytest.raises(ValueError):
        attr.ig_alphas(7, "simpson")


@pytest.mark.parametrize("batch_size,checkpoint", [(1, False), (3, True), (None, None)])
def test_batched_integrated_gradients_equal_captum(model, clip, batch_size, checkpoint):
    from captum.attr import IntegratedGradients

    target, steps = 4, 6
    base = torch.full_like(clip, 3.0)
    ours, delta = attr.integrated_gradients_raw(model, clip, target, steps, baseline=base, batch_size=batch_size,
                                                checkpoint=checkpoint)
    private = attr._private_copy(model)
    with torch.inference_mode(False), torch.enable_grad():
        theirs, their_delta = IntegratedGradients(private).attribute(
            clip.clone(), baselines=base, target=target, n_steps=steps, internal_batch_size=2,
            return_convergence_delta=True)
    scale = float(theirs.abs().max())
    assert scale > 0
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), atol=2e-4 * scale, rtol=1e-3)
    assert delta == pytest.approx(float(their_delta), abs=1e-3 * (1 + abs(float(their_delta))) + 1e-4 * scale)


def test_progress_per_batch_and_cancel_between_batches(model, clip):
    reports = []
    attr.integrated_gradients_raw(model, clip, 1, steps=5, batch_size=2, checkpoint=False,
                                  progress=lambda f, m: reports.append((f, m)))
    assert [f for f, _ in reports] == pytest.approx([0.4, 0.8, 1.0])
    assert reports[-1][1] == "Integrated Gradients: step 5 of 5"
    passes = []
    with pytest.raises(JobCancelled):
        attr.integrated_gradients_raw(model, clip, 1, steps=8, batch_size=2, checkpoint=False,
                                      progress=lambda f, m: passes.append(f), cancel=lambda: len(passes) >= 1)
    assert passes == [0.25]  # stopped after the first batch
    with pytest.raises(JobCancelled):
        attr.saliency(model, clip, 1, cancel=lambda: True)
    done = []
    attr.saliency(model, clip, 1, progress=lambda f, m: done.append(f))
    assert done == [1.0]


def test_memory_plan_checkpoints_only_when_one_clip_does_not_fit(model, clip):
    plain = attr.saved_bytes_per_clip(model, clip)
    checkpointed = attr.saved_bytes_per_clip(model, clip, checkpointed=True)
    assert 0 < checkpointed < plain
    assert attr.ig_plan(model, clip) == (4, False)  # a demo model: 4 alphas per pass, no recomputation
    tight = plain / 2**20 * 0.5  # half of one clip's activations
    batch, ck = attr.ig_plan(model, clip, memory_mb=tight)
    assert ck and batch >= 1
    assert attr.ig_plan(model, clip, max_batch=2, memory_mb=10 * plain / 2**20) == (2, False)


@pytest.fixture()
def checkpoint_file(tmp_path, model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, list(SYNTH_CLASSES))
    return path


def test_attribution_job_is_cached_on_disk_by_its_key(checkpoint_file, clip, monkeypatch):
    sha = file_sha256(checkpoint_file)
    pool = JobPool(1, "thread")
    try:
        st = pool.wait(aj.start_attribution(checkpoint_file, sha, clip, "integrated_gradients", 2, steps=4,
                                            pool=pool).key, 120)
        assert st.state == "done" and not st.cached, st.error
        maps = st.result["maps"]
        assert maps.shape == (T, S, S) and maps.dtype == np.float32 and 0 <= maps.min() and maps.max() <= 1
        assert st.result["batch_size"] == 4 and st.result["checkpointed"] is False
        key = aj.attribution_key(sha, aj.clip_hash(clip), "integrated_gradients", 2, 4)
        assert aj.cache_path(key).is_file()
    finally:
        pool.shutdown()
    monkeypatch.setattr(aj, "_model", lambda *a: (_ for _ in ()).throw(AssertionError("should be cached")))
    fresh = JobPool(1, "thread")
    try:
        again = aj.start_attribution(checkpoint_file, sha, clip, "integrated_gradients", 2, steps=4, pool=fresh)
        assert again.state == "done" and again.cached
        np.testing.assert_array_equal(again.result["maps"], maps)
        other = fresh.wait(aj.start_attribution(checkpoint_file, sha, clip, "integrated_gradients", 2, steps=5,
                                                pool=fresh).key, 30)
        assert other.state == "failed"  # another key: not the cached map (and our stub refuses to load)
    finally:
        fresh.shutdown()
    # Steps matter only for IG, the layer only for Grad-CAM.
    assert aj.attribution_key(sha, "c", "saliency", 1, 4) == aj.attribution_key(sha, "c", "saliency", 1, 16)
    assert aj.attribution_key(sha, "c", "grad_cam", 1, layer="inception_4a") != \
        aj.attribution_key(sha, "c", "grad_cam", 1, layer="inception_5b")
    with pytest.raises(ValueError, match="unknown attribution method"):
        aj.attribution_key(sha, "c", "lime", 1)


def test_a_checkpoint_changed_on_disk_is_refused(checkpoint_file, clip):
    pool = JobPool(1, "thread")
    try:
        st = pool.wait(aj.start_attribution(checkpoint_file, "0" * 64, clip, "saliency", 1, pool=pool).key, 60)
        assert st.state == "failed" and "changed on disk" in st.error
    finally:
        pool.shutdown()


def test_attribution_in_a_worker_process_reports_progress_and_cancels(checkpoint_file, clip, model):
    sha = file_sha256(checkpoint_file)
    pool = JobPool(1, "process", idle_s=60)
    try:
        st = aj.start_attribution(checkpoint_file, sha, clip, "grad_cam", 3, layer="inception_4a", pool=pool)
        done = pool.wait(st.key, 120)
        assert done.state == "done", done.error
        np.testing.assert_allclose(done.result["maps"], attr.grad_cam(model, clip, 3, "inception_4a"), atol=1e-4)
        long = aj.start_attribution(checkpoint_file, sha, clip, "integrated_gradients", 3, steps=400, pool=pool)
        deadline = time.time() + 120
        while pool.status(long.key).fraction == 0.0 and time.time() < deadline:
            time.sleep(0.05)
        running = pool.status(long.key)
        assert running.state == "running" and running.message.startswith("Integrated Gradients: step")
        assert running.eta_s is not None and running.eta_s > 0
        pool.cancel(long.key)
        assert pool.wait(long.key, 60).state == "cancelled"
        assert not aj.cache_path(aj.attribution_key(sha, aj.clip_hash(clip), "integrated_gradients", 3, 400)).exists()
    finally:
        pool.shutdown()
