"""Clip lab page + the sidebar (app/sidebar.py, app/loaders.py), through Streamlit's AppTest."""

from __future__ import annotations

import os

import numpy as np
import pytest

from _app_fixtures import (app_env, assert_ok, choices, copy_demo_dir, demo_dir, make_model, new_app,  # noqa: F401
                           plotly_specs, selection, texts)
from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES

pytestmark = pytest.mark.usefixtures("app_env")


def _good_mp4() -> bytes:
    from app.settings import samples_dir

    return sorted(samples_dir().glob("*.mp4"))[0].read_bytes()


def test_default_run_shows_both_predictions():
    at = new_app().run()
    assert_ok(at)
    assert at.sidebar.selectbox(key="w_model_A").value == "hf_tsn_demo.safetensors"
    assert at.sidebar.selectbox(key="w_model_B").value == "tsn_demo.safetensors"
    assert any("Device: **cpu**" in c for c in texts(at.sidebar, "caption"))
    assert len(plotly_specs(at)) == 2  # top-5 of A and of B
    verdict = texts(at, "success") + texts(at, "warning")
    assert any("Both models say" in v or "The models disagree" in v for v in verdict)
    md = texts(at, "markdown")
    assert any("True label: **Moving something from left to right**" in m for m in md)
    assert any("The file: 16 frames · 112×112 px · 8 fps · 2.0 s" in m for m in md)  # the clip as it is
    assert any("The models see: 8 frames at 64×64 px (A and B)" in m for m in md)  # ... and what models see
    assert not texts(at, "error")


def test_header_names_the_loaded_models_not_a_fixed_pair():
    """A and B are described from the loaded checkpoints: swap them and the header follows."""
    at = new_app().run()
    header = next(m for m in texts(at, "markdown") if "hf-header" in m)
    assert "hf_tsn_demo</b>: HF-TSN, HF after 10 blocks" in header and "tsn_demo</b>: TSN, no HF" in header
    assert "BN-Inception ×0.25 · 64 px · 8 frames · 16 classes" in header
    at.sidebar.selectbox(key="w_model_A").set_value("tsn_demo.safetensors").run()
    at.sidebar.selectbox(key="w_model_B").set_value("hf_tsn_demo.safetensors").run()
    assert_ok(at)
    header = next(m for m in texts(at, "markdown") if "hf-header" in m)
    assert header.index(">A<") < header.index("tsn_demo</b>: TSN") < header.index(">B<") < header.index("HF-TSN")


def test_changing_the_sample_changes_the_output():
    at = new_app().run()
    before = [m for m in texts(at, "markdown") if m.startswith("**") and "source:" in m]
    at.sidebar.selectbox(key="w_sample").select_index(8).run()
    assert_ok(at)
    after = [m for m in texts(at, "markdown") if m.startswith("**") and "source:" in m]
    assert before != after and any("Holding something still" in m for m in after)


def test_reversal_marks_the_reversed_pair_and_proves_tsn_is_order_blind():
    at = new_app().run()
    at.toggle(key="w_reverse").set_value(True).run()
    assert_ok(at)
    table = at.table[0].value
    rows = {r["model"]: r for r in table.to_dict("records")}
    tsn, hf = rows["B · tsn_demo"], rows["A · hf_tsn_demo"]
    assert float(tsn["max |Δlogit|"]) < 1e-4 and tsn["order"] == "blind"  # the same frames, reordered
    assert float(hf["max |Δlogit|"]) > 100 * float(tsn["max |Δlogit|"]) and hf["order"] == "seen"
    captions = texts(at, "caption")
    assert any("B · tsn_demo: the same frames in reverse order give the same logits" in c for c in captions)
    assert any("the reversed clip's true label is **Moving something from right to left**" in c for c in captions)
    assert len(plotly_specs(at)) == 4  # forward and backwards top-5 of both models
    sel = selection(at)
    assert sel.reverse and sel.reversed_label == "Moving something from right to left"
    # backwards charts mark the reversed pair's label as the true class, forward ones the clip's own
    from app.figures import COLOR_TRUE

    for spec in plotly_specs(at):
        bars = spec["data"][0]
        true_bars = [n for n, c in zip(bars["hovertext"], bars["marker"]["color"]) if c == COLOR_TRUE]
        want = sel.reversed_label if "backwards" in spec["layout"]["meta"]["title"] else sel.clip.label_name
        assert true_bars in ([], [want])


def test_order_free_class_keeps_its_label_backwards():
    at = new_app().run()
    at.sidebar.selectbox(key="w_sample").set_value("14_holding_sth_still.mp4").run()
    at.toggle(key="w_reverse").set_value(True).run()
    assert_ok(at)
    assert selection(at).reversed_label == "Holding something still"
    assert any("reads the same backwards" in c for c in texts(at, "caption"))


def test_reversed_label_unknown_for_an_upload():
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()
    at.sidebar.file_uploader(key="w_upload").set_value(("mine.mp4", _good_mp4(), "video/mp4")).run()
    at.toggle(key="w_reverse").set_value(True).run()
    assert_ok(at)
    assert selection(at).reversed_label is None
    assert any("true label is **unknown**" in c for c in texts(at, "caption"))


def test_corrupt_upload_shows_specific_error_and_app_keeps_working():
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()
    assert_ok(at)
    at.sidebar.file_uploader(key="w_upload").set_value(("broken.mp4", b"\x00\x01garbage" * 100, "video/mp4")).run()
    assert_ok(at)
    errors = texts(at, "error")
    assert any("broken.mp4" in e and "not a video" in e for e in errors), errors
    at.sidebar.radio(key="w_clip_source").set_value("sample").run()  # back to a sample: everything works again
    assert_ok(at)
    assert not texts(at, "error") and len(plotly_specs(at)) == 2


def test_truncated_and_good_uploads():
    good = _good_mp4()
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()
    at.sidebar.file_uploader(key="w_upload").set_value(("cut.mp4", good[: len(good) // 2], "video/mp4")).run()
    assert any("cut.mp4" in e and "truncated" in e for e in texts(at, "error"))
    at.sidebar.file_uploader(key="w_upload").set_value(("mine.mp4", good, "video/mp4")).run()
    assert_ok(at)
    assert not texts(at, "error")
    assert any(m.startswith("**mine.mp4**") for m in texts(at, "markdown"))
    assert len(plotly_specs(at)) == 2


def test_upload_survives_switching_the_clip_source():
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()
    at.sidebar.file_uploader(key="w_upload").set_value(("mine.mp4", _good_mp4(), "video/mp4")).run()
    assert selection(at).clip.name == "mine.mp4"
    at.sidebar.radio(key="w_clip_source").set_value("sample").run()
    assert selection(at).clip.source == "sample"
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()  # the uploader widget forgot the file...
    assert_ok(at)
    assert selection(at).clip.name == "mine.mp4"  # ... the session did not
    assert any("Your upload **mine.mp4** is kept" in c for c in texts(at.sidebar, "caption"))
    at.sidebar.button(key="upload_forget").click().run()
    assert selection(at).clip is None


def test_upload_size_limit(monkeypatch):
    monkeypatch.setenv("HFNET_MAX_UPLOAD_MB", "0.001")
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()
    at.sidebar.file_uploader(key="w_upload").set_value(("big.mp4", b"x" * 5000, "video/mp4")).run()
    assert_ok(at)
    assert any("upload limit" in e for e in texts(at, "error"))


def test_out_of_scope_notice_for_real_footage(tmp_path):
    """An upload is not from the training set (the fixture models record SynthSomething), a large frame is
    shrunk far below what the model saw: both are said, next to the answers."""
    from hfnet_core.data.video import write_video

    frames = np.random.default_rng(0).integers(0, 255, (12, 480, 640, 3), dtype=np.uint8)
    path = tmp_path / "phone.mp4"
    write_video(path, frames, fps=10)
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("upload").run()
    with open(path, "rb") as f:
        at.sidebar.file_uploader(key="w_upload").set_value(("phone.mp4", f.read(), "video/mp4")).run()
    assert_ok(at)
    notice = next(w for w in texts(at, "warning") if "Read these answers with care" in w)
    assert "Trained only on SynthSomething (synthetic clips): it knows 16 classes" in notice
    assert "the frames are shrunk 8× and small objects may vanish" in notice
    assert any("The file: 12 frames · 640×480 px · 10 fps" in m for m in texts(at, "markdown"))
    assert any("scaled from 640×480 to 400×300 px" in c for c in texts(at, "caption"))


def test_different_class_lists_and_adopting_names(demo_dir, tmp_path, monkeypatch):  # noqa: F811
    """Same class count, other names: the comparison is refused with a reason, and the sidebar offers -
    never imposes - the other model's names; accepted, the two are compared."""
    d = copy_demo_dir(demo_dir, tmp_path / "ckpts")
    model = make_model("tsn_bninception_demo", 3)
    save_checkpoint(d / "foreign.safetensors", model, [f"class_{i:03d}" for i in range(model.config.num_classes)])
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = new_app().run()
    at.sidebar.selectbox(key="w_model_B").set_value("foreign.safetensors").run()
    assert_ok(at)
    assert any("different class lists" in e for e in texts(at, "error"))
    assert len(plotly_specs(at)) == 2  # each model's own prediction still shows
    assert not selection(at).comparable
    at.sidebar.button(key="names_adopt_B").click().run()
    assert_ok(at)
    sel = selection(at)
    assert sel.comparable and sel.b.class_names == list(SYNTH_CLASSES) and sel.b.names_source == "model A"
    assert not any("different class lists" in e for e in texts(at, "error"))
    assert at.query_params["b_names"] == "A"
    at.sidebar.button(key="names_reset_B").click().run()
    assert not selection(at).comparable


def test_classes_file_next_to_a_typed_path(demo_dir, tmp_path, monkeypatch):  # noqa: F811
    d = copy_demo_dir(demo_dir, tmp_path / "ckpts")
    (d / "category.txt").write_text("".join(f"{n}\n" for n in SYNTH_CLASSES[::-1]))
    (d / "short.json").write_text('["only", "two"]')
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = new_app().run()
    at.sidebar.selectbox(key="w_model_B").set_value("other").run()
    at.sidebar.text_input(key="w_model_B_path").set_value("tsn_demo.safetensors").run()
    at.sidebar.text_input(key="w_model_B_classes").set_value("short.json").run()
    assert any("short.json" in e and "lists 2 class names; the model has 16 classes" in e
               for e in texts(at.sidebar, "error"))
    at.sidebar.text_input(key="w_model_B_classes").set_value("category.txt").run()
    assert_ok(at)
    b = selection(at).b
    assert b.class_names == list(SYNTH_CLASSES[::-1]) and b.names_source == "category.txt"
    assert at.query_params["b"] == "tsn_demo.safetensors" and at.query_params["b_classes"] == "category.txt"


def test_broken_checkpoint_and_bad_paths(demo_dir, tmp_path, monkeypatch):  # noqa: F811
    d = copy_demo_dir(demo_dir, tmp_path / "ckpts")
    (d / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    outside = tmp_path / "elsewhere"
    copy_demo_dir(demo_dir, outside)
    (d / "linked.safetensors").symlink_to(outside / "hf_tsn_demo.safetensors")  # a link out of the root
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = new_app().run()
    assert "linked.safetensors" not in at.sidebar.selectbox(key="w_model_A").options  # not even listed
    at.sidebar.selectbox(key="w_model_A").set_value("broken.safetensors").run()
    assert_ok(at)
    assert any("Model A" in e and "broken.safetensors" in e for e in texts(at.sidebar, "error"))
    assert len(plotly_specs(at)) == 1  # model B still predicts
    at.sidebar.selectbox(key="w_model_A").set_value("other").run()
    for typed, message in (("/etc/passwd", "outside the checkpoint folder"),
                           ("linked.safetensors", "a link that leaves the folder is refused"),
                           ("../elsewhere/hf_tsn_demo.safetensors", "outside the checkpoint folder"),
                           ("missing.safetensors", "no such file"),
                           ("bad\x00name.safetensors", "NUL byte")):
        at.sidebar.text_input(key="w_model_A_path").set_value(typed).run()
        assert_ok(at)
        assert any(message in e for e in texts(at.sidebar, "error")), (typed, texts(at.sidebar, "error"))
    at.sidebar.text_input(key="w_model_A_path").set_value("hf_tsn_demo.safetensors").run()
    assert_ok(at)
    assert not texts(at.sidebar, "error") and len(plotly_specs(at)) == 2


def test_open_a_bundle_clip():
    """Feature space's "open in Clip lab" sets the selection's clip: a synth id is regenerated."""
    at = new_app()
    at.query_params.update({"src": "bundle", "clip": "synth/test/000003"})
    at.run()
    assert_ok(at)
    assert at.sidebar.radio(key="w_clip_source").value == "bundle"
    md = texts(at, "markdown")
    assert any(m.startswith("**synth/test/000003**") for m in md)
    assert any("True label: **Moving something away from the camera**" in m for m in md)


def test_data_root(tmp_path, monkeypatch):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "clip.mp4").write_bytes(_good_mp4())
    (tmp_path / "secret.mp4").write_bytes(_good_mp4())
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    os.mkfifo(root / "pipe.mp4")
    monkeypatch.setenv("HFNET_DATA_ROOT", str(root))
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("root").run()
    assert_ok(at)
    for typed, message in (("../../etc/passwd", "outside the data root"), ("link.mp4", "outside the data root"),
                           ("pipe.mp4", "not a regular file"), ("nope.mp4", "no such file")):
        at.sidebar.text_input(key="w_root_file").set_value(typed).run()
        assert_ok(at)
        assert any(message in e for e in texts(at, "error")), (typed, texts(at, "error"))
    at.sidebar.text_input(key="w_root_file").set_value("sub/clip.mp4").run()
    assert_ok(at)
    assert not texts(at, "error") and len(plotly_specs(at)) == 2


def test_an_internal_error_is_shown_and_the_session_goes_on(monkeypatch):
    """A bug (not an HfnetError) in a model run becomes an "internal error" box with details; the other
    model still answers and the next run works."""
    from app import loaders

    calls = {"n": 0}
    real = loaders.run_clip

    def flaky(ckpt, x, k=5):
        if "hf_tsn" in ckpt.path and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("simulated bug")
        return real(ckpt, x, k)

    loaders._predict_cached.clear()
    monkeypatch.setattr(loaders, "run_clip", flaky)
    at = new_app().run()
    assert_ok(at)
    err = [e for e in texts(at, "error") if "A · hf_tsn_demo" in e]
    assert err and "internal error (RuntimeError: simulated bug)" in err[0] and "a bug in hfnet" in err[0]
    assert len(plotly_specs(at)) == 1
    loaders._predict_cached.clear()
    at.run()
    assert_ok(at)
    assert not texts(at, "error") and len(plotly_specs(at)) == 2


def test_two_sessions_share_models_and_bundles():
    """Two sessions (AppTest instances) use the same cached model and eval-bundle objects (one per
    process, read-only) and get the same predictions, while each keeps its own clip choice."""
    a, b = new_app().run(), new_app().run()
    assert_ok(a)
    assert_ok(b)
    sa, sb = selection(a), selection(b)
    assert sa.a.checkpoint.model is sb.a.checkpoint.model  # st.cache_resource: one model per process
    assert sa.a.bundle is sb.a.bundle and sa.a.bundle is not None  # ... and one bundle
    assert not sa.a.bundle.features.flags.writeable  # shared read-only
    assert plotly_specs(a) == plotly_specs(b)
    b.sidebar.selectbox(key="w_sample").select_index(3).run()
    a.run()
    assert a.sidebar.selectbox(key="w_sample").index == 0
    assert plotly_specs(a) != plotly_specs(b)


def test_concurrent_sessions_in_threads():
    """What sessions running at the same time in the server's threads share: the cached model
    (``st.cache_resource``, one object for all), the decoded sample and the cached prediction.
    Started together from cold caches, they all get the same answers.

    Not AppTests in threads: every ``AppTest.run`` swaps process-wide streamlit state, so concurrent AppTests
    race inside streamlit's test harness, not in the app. Whole sessions in one real server at once:
    ``test_browser.py::test_concurrent_sessions``.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app import loaders, settings
    from hfnet_core.analysis.inference import run_clip

    entries = loaders.sample_entries()[:2]
    path = settings.model_path(settings.DEFAULT_A)
    for cached in (loaders._load_model_cached, loaders._decode_file_cached, loaders._sampled_cached,
                   loaders._predict_cached):
        cached.clear()
    start = threading.Barrier(4)

    def session(i: int):
        start.wait(60)
        ckpt = loaders.load_model(path, "cpu")
        clip = loaders.sample_clip(entries[i % 2])
        p = loaders.predict(ckpt, clip)
        return ckpt, clip.clip_hash, p.top5_names, np.asarray(p.probs)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(session, range(4)))
    assert all(r[0] is results[0][0] for r in results)  # one shared model
    for a, b in ((0, 2), (1, 3)):  # same sample: same clip, same prediction
        assert results[a][1] == results[b][1] and results[a][2] == results[b][2]
        np.testing.assert_allclose(results[a][3], results[b][3], rtol=0, atol=1e-6)
    assert results[0][1] != results[1][1]
    for i in (0, 1):  # and single-threaded, uncached, the same numbers
        ckpt, clip = results[i][0], loaders.sample_clip(entries[i])
        ref = run_clip(ckpt, loaders.sampled_input(ckpt, clip))
        np.testing.assert_allclose(np.asarray(ref.probs), results[i][3], rtol=0, atol=1e-5)


def test_shipped_samples():
    """checkpoints/samples: small, labelled, decodable, and what make_samples generates."""
    import json

    from app.settings import samples_dir
    from hfnet_core.analysis.clips import decode_video
    from hfnet_core.analysis.make_samples import NUM_FRAMES, SIZE, sample_noun
    from hfnet_core.data.synthetic import generate_clip

    d = samples_dir()
    meta = json.loads((d / "samples.json").read_text())
    files = [d / e["file"] for e in meta["clips"]]
    assert 5 <= len(files) <= 16
    assert sum(f.stat().st_size for f in files) <= 1_000_000
    for e in meta["clips"]:
        assert e["label"] == SYNTH_CLASSES[e["class_index"]]
        assert e["noun"] == sample_noun(e["class_index"], e["seed"])  # its object, for multi-task models
    e = meta["clips"][0]
    frames, fps = decode_video(d / e["file"])
    assert frames.shape == (NUM_FRAMES, SIZE, SIZE, 3) and fps == e["fps"]
    ref = generate_clip(e["class_index"], e["seed"], NUM_FRAMES, SIZE).astype(float)
    mse = float(((frames.astype(float) - ref) ** 2).mean())
    assert 10 * np.log10(255.0**2 / max(mse, 1e-9)) > 28  # H.264 of the very same clip


def test_a_long_file_is_shown_at_its_real_rate_from_a_chosen_start(tmp_path, monkeypatch):
    """A 40 s file: the explorer keeps 300 frames at the real 10 fps (0-30 s) and says so; the user moves the
    start to see the rest, and the link keeps it."""
    from hfnet_core.data.video import write_video

    root = tmp_path / "videos"
    root.mkdir()
    frames = np.random.default_rng(1).integers(0, 255, (400, 48, 64, 3), dtype=np.uint8)
    write_video(root / "long.mp4", frames, fps=10)
    monkeypatch.setenv("HFNET_DATA_ROOT", str(root))
    at = new_app().run()
    at.sidebar.radio(key="w_clip_source").set_value("root").run()
    at.sidebar.text_input(key="w_root_file").set_value("long.mp4").run()
    assert_ok(at)
    md = " ".join(texts(at, "markdown"))
    assert "The file: 400 frames · 64×48 px · 10 fps · 40.0 s" in md
    assert "Read for display: 300 frames · 64×48 px · plays at 10 fps · 0.0–30.0 s of it" in md
    assert any("at most 300 frames are kept at the real frame rate" in c for c in texts(at, "caption"))
    at.sidebar.number_input(key="w_start").set_value(35.0).run()
    assert_ok(at)
    assert selection(at).clip.info.read_frames == 50 and "35.0–40.0 s of it" in " ".join(texts(at, "markdown"))
    assert at.query_params["t"] == "35"
    again = new_app()
    again.query_params.update(dict(at.query_params))
    again.run()
    assert selection(again).clip.info.span_s == selection(at).clip.info.span_s
