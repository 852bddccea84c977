"""Clip lab page + the shared sidebar (app/state.py), through Streamlit's AppTest."""

from __future__ import annotations

import numpy as np
import pytest

from _app_fixtures import app_env, assert_ok, demo_dir, make_model, new_app, plotly_specs, texts  # noqa: F401
from hfnet_core.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("app_env")


def _top1s(at) -> list[str]:
    """Top-1 class of each top-5 chart (bars are drawn best-last)."""
    return [s["data"][0]["y"][-1].replace("<br>", " ") for s in plotly_specs(at)]


def test_default_run_shows_both_predictions():
    at = new_app().run()
    assert_ok(at)
    assert at.sidebar.selectbox(key="hf_model_A_choice").value == "hf_tsn_demo.safetensors"
    assert at.sidebar.selectbox(key="hf_model_B_choice").value == "tsn_demo.safetensors"
    assert any("Device: **cpu**" in c for c in texts(at.sidebar, "caption"))
    assert len(plotly_specs(at)) == 2  # top-5 of A and of B
    verdict = texts(at, "success") + texts(at, "warning")
    assert any("Both models say" in v or "The models disagree" in v for v in verdict)
    assert any("True label: **Moving something from left to right**" in m for m in texts(at, "markdown"))
    assert not texts(at, "error")


def test_changing_the_sample_changes_the_output():
    at = new_app().run()
    before = [m for m in texts(at, "markdown") if m.startswith("**")]
    at.sidebar.selectbox(key="hf_sample").select_index(8).run()
    assert_ok(at)
    after = [m for m in texts(at, "markdown") if m.startswith("**")]
    assert before != after and any("Holding something still" in m for m in after)


def test_reverse_toggle():
    at = new_app().run()
    at.toggle(key="clip_lab_reverse").set_value(True).run()
    assert_ok(at)
    assert any("(reversed)" in m for m in texts(at, "markdown"))
    assert any("True label: unknown after reversal" in m for m in texts(at, "markdown"))


def test_corrupt_upload_shows_specific_error_and_app_keeps_working():
    at = new_app().run()
    at.sidebar.radio(key="hf_clip_source").set_value("Upload a video").run()
    assert_ok(at)
    at.sidebar.file_uploader(key="hf_upload").set_value(("broken.mp4", b"\x00\x01garbage" * 100, "video/mp4")).run()
    assert_ok(at)
    errors = texts(at, "error")
    assert any("broken.mp4" in e and "not a video" in e for e in errors), errors
    # back to a sample: everything works again
    at.sidebar.radio(key="hf_clip_source").set_value("Sample clip").run()
    assert_ok(at)
    assert not texts(at, "error") and len(plotly_specs(at)) == 2


def test_truncated_and_good_uploads():
    from app.state import samples_dir

    good = sorted(samples_dir().glob("*.mp4"))[0].read_bytes()
    at = new_app().run()
    at.sidebar.radio(key="hf_clip_source").set_value("Upload a video").run()
    at.sidebar.file_uploader(key="hf_upload").set_value(("cut.mp4", good[: len(good) // 2], "video/mp4")).run()
    assert any("cut.mp4" in e and "truncated" in e for e in texts(at, "error"))
    at.sidebar.file_uploader(key="hf_upload").set_value(("mine.mp4", good, "video/mp4")).run()
    assert_ok(at)
    assert not texts(at, "error")
    assert any(m.startswith("**mine.mp4**") for m in texts(at, "markdown"))
    assert len(plotly_specs(at)) == 2


def test_upload_size_limit(monkeypatch):
    monkeypatch.setenv("HFNET_MAX_UPLOAD_MB", "0.001")
    at = new_app().run()
    at.sidebar.radio(key="hf_clip_source").set_value("Upload a video").run()
    at.sidebar.file_uploader(key="hf_upload").set_value(("big.mp4", b"x" * 5000, "video/mp4")).run()
    assert_ok(at)
    assert any("upload limit" in e for e in texts(at, "error"))


def test_different_class_lists(demo_dir, tmp_path, monkeypatch):  # noqa: F811
    d = tmp_path / "ckpts"
    d.mkdir()
    for f in demo_dir.glob("*"):
        (d / f.name).symlink_to(f)
    model = make_model("tsn_bninception_demo", 3)
    names = [f"other class {i}" for i in range(model.config.num_classes)]
    save_checkpoint(d / "other_classes.safetensors", model, names)
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = new_app().run()
    at.sidebar.selectbox(key="hf_model_B_choice").set_value("other_classes.safetensors").run()
    assert_ok(at)
    assert any("different class lists" in e for e in texts(at, "error"))
    assert len(plotly_specs(at)) == 2  # each model's own prediction still shows


def test_broken_checkpoint_and_bad_paths(demo_dir, tmp_path, monkeypatch):  # noqa: F811
    d = tmp_path / "ckpts"
    d.mkdir()
    for f in demo_dir.glob("*"):
        (d / f.name).symlink_to(f)
    (d / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = new_app().run()
    at.sidebar.selectbox(key="hf_model_A_choice").set_value("broken.safetensors").run()
    assert_ok(at)
    assert any("Model A" in e and "broken.safetensors" in e for e in texts(at.sidebar, "error"))
    assert len(plotly_specs(at)) == 1  # model B still predicts
    at.sidebar.selectbox(key="hf_model_A_choice").set_value("Other file (type a path)…").run()
    at.sidebar.text_input(key="hf_model_A_path").set_value("/etc/passwd").run()
    assert_ok(at)
    assert any("outside the checkpoint folder" in e for e in texts(at.sidebar, "error"))
    at.sidebar.text_input(key="hf_model_A_path").set_value("missing.safetensors").run()
    assert any("no such file" in e for e in texts(at.sidebar, "error"))
    at.sidebar.text_input(key="hf_model_A_path").set_value("hf_tsn_demo.safetensors").run()
    assert_ok(at)
    assert not texts(at.sidebar, "error") and len(plotly_specs(at)) == 2


def test_request_clip_opens_bundle_clip():
    """Feature space's "open in Clip lab" goes through request_clip: a synth id is regenerated."""
    at = new_app()
    at.session_state["_hf_clip_request"] = {"clip_id": "synth/test/000003", "path": "synth/test/000003"}
    at.session_state["_hf_clip_request_pending"] = True
    at.run()
    assert_ok(at)
    assert at.sidebar.radio(key="hf_clip_source").value == "Opened from another page"
    md = texts(at, "markdown")
    assert any(m.startswith("**synth/test/000003**") for m in md)
    assert any("True label: **Moving something away from the camera**" in m for m in md)


def test_data_root(tmp_path, monkeypatch):
    from app.state import samples_dir

    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    src = sorted(samples_dir().glob("*.mp4"))[0]
    (root / "sub" / "clip.mp4").write_bytes(src.read_bytes())
    monkeypatch.setenv("HFNET_DATA_ROOT", str(root))
    at = new_app().run()
    at.sidebar.radio(key="hf_clip_source").set_value("File under the data root").run()
    assert_ok(at)
    at.sidebar.text_input(key="hf_root_file").set_value("../../etc/passwd").run()
    assert any("outside the data root" in e for e in texts(at, "error"))
    at.sidebar.text_input(key="hf_root_file").set_value("sub/clip.mp4").run()
    assert_ok(at)
    assert not texts(at, "error") and len(plotly_specs(at)) == 2


def test_two_sessions_share_models_and_agree():
    """Two sessions (AppTest instances) use the same cached model objects and get the same predictions,
    while each keeps its own clip choice."""
    a, b = new_app().run(), new_app().run()
    assert_ok(a)
    assert_ok(b)
    ma, mb = a.session_state["_hf_models"], b.session_state["_hf_models"]
    assert ma[0].checkpoint.model is mb[0].checkpoint.model  # st.cache_resource: one model per process
    assert plotly_specs(a) == plotly_specs(b)
    b.sidebar.selectbox(key="hf_sample").select_index(3).run()
    a.run()
    assert a.sidebar.selectbox(key="hf_sample").index == 0
    assert plotly_specs(a) != plotly_specs(b)


def test_concurrent_sessions_in_threads():
    """What sessions running at the same time in the server's threads share: the cached model
    (``st.cache_resource``, one object for all), the decoded sample and the cached prediction
    (``st.cache_data``). Started together from cold caches, they all get the same answers.

    Not AppTests in threads: every ``AppTest.run`` swaps process-wide streamlit state (``Runtime._instance``,
    ``PagesManager.uses_pages_directory``, config options), so concurrent AppTests race inside streamlit's
    test harness (KeyErrors on widget ids, "Runtime hasn't been created!"), not in the app. Whole sessions
    in one real server at once: ``test_browser.py::test_concurrent_sessions``.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app import state
    from hfnet_core.analysis.inference import run_clip

    entries = state._sample_entries()[:2]
    path = str(state.checkpoint_dir() / state.DEFAULT_A)
    state._load_model_cached.clear()
    state._decode_file_cached.clear()
    state._sampled_cached.clear()
    state._predict_cached.clear()
    start = threading.Barrier(4)

    def session(i: int):
        start.wait(60)
        ckpt = state.load_model(path, "cpu")
        clip = state._sample_clip(entries[i % 2])
        p = state.predict(ckpt, clip)
        return ckpt, clip.clip_hash, p.top5_names, np.asarray(p.probs)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(session, range(4)))
    assert all(r[0] is results[0][0] for r in results)  # one shared model
    for a, b in ((0, 2), (1, 3)):  # same sample: same clip, same prediction
        assert results[a][1] == results[b][1] and results[a][2] == results[b][2]
        np.testing.assert_allclose(results[a][3], results[b][3], rtol=0, atol=1e-6)
    assert results[0][1] != results[1][1]
    # and single-threaded, uncached, the same numbers
    for i in (0, 1):
        ckpt, clip = results[i][0], state._sample_clip(entries[i])
        ref = run_clip(ckpt, state.sampled_input(ckpt, clip))
        np.testing.assert_allclose(np.asarray(ref.probs), results[i][3], rtol=0, atol=1e-5)


def test_request_clip_switches_to_clip_lab(monkeypatch):
    """request_clip (called by other pages) records the clip and switches to the Clip lab page."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def script():
        from app.state import request_clip

        request_clip("synth/test/000005", "synth/test/000005")

    # monkeypatch, not an assignment inside the script: `st` is this process's one streamlit module, and a
    # fake switch_page left on it would break every later test that switches pages.
    monkeypatch.setattr(st, "switch_page", lambda page: st.session_state.__setitem__("switched_to", page))
    at = AppTest.from_function(script, default_timeout=60).run()
    assert_ok(at)
    assert at.session_state["switched_to"] == "views/clip_lab.py"
    assert at.session_state["_hf_clip_request"] == {"clip_id": "synth/test/000005", "path": "synth/test/000005"}
    assert at.session_state["_hf_clip_request_pending"] is True


def test_shipped_samples():
    """checkpoints/samples: small, labelled, decodable, and what make_samples generates."""
    import json

    from app.state import samples_dir
    from hfnet_core.analysis.clips import decode_video
    from hfnet_core.analysis.make_samples import NUM_FRAMES, SIZE
    from hfnet_core.data.synthetic import SYNTH_CLASSES, generate_clip

    d = samples_dir()
    meta = json.loads((d / "samples.json").read_text())
    files = [d / e["file"] for e in meta["clips"]]
    assert 5 <= len(files) <= 16
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    for e in meta["clips"]:
        assert e["label"] == SYNTH_CLASSES[e["class_index"]]
    e = meta["clips"][0]
    frames, fps = decode_video(d / e["file"])
    assert frames.shape == (NUM_FRAMES, SIZE, SIZE, 3) and fps == e["fps"]
    ref = generate_clip(e["class_index"], e["seed"], NUM_FRAMES, SIZE).astype(float)
    mse = float(((frames.astype(float) - ref) ** 2).mean())
    assert 10 * np.log10(255.0**2 / max(mse, 1e-9)) > 28  # H.264 of the very same clip
