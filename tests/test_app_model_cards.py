"""Model cards page through AppTest."""

from __future__ import annotations

import pytest

from _app_fixtures import app_env, assert_ok, demo_dir, new_app, texts  # noqa: F401

pytestmark = pytest.mark.usefixtures("app_env")


def test_cards_for_both_models():
    at = new_app().run()
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    assert [h.value for h in at.subheader][:2] == ["A · hf_tsn_demo", "B · tsn_demo"]
    tables = [t.value for t in at.table]
    flat = " ".join(str(t.to_dict()) for t in tables)
    assert "after 3a, 3b, 3c, 4a, 4b, 4c, 4d, 4e, 5a, 5b" in flat and "none (plain TSN)" in flat
    assert "FLOPs per clip" in flat
    assert "random init (test fixture)" in flat  # training summary from the checkpoint metadata
    assert flat.count("gate learning-rate factor") == 1 and "last epoch: val_top1" in flat  # A has gates, B none
    curves = [c for c in at.get("plotly_chart")]
    assert len(curves) == 2  # one training curve per model (loss, accuracy)
    assert any("Eval bundle" in m for m in texts(at, "markdown"))
    table_one = at.dataframe[0].value
    assert list(table_one["model"])[0] == "Baseline" and "FLOPs (paper)" in table_one.columns
    assert any("cannot change TSN's logits" in i or "cannot" in i for i in texts(at, "info"))
    assert "width ×0.25, 64 px, 8 frames, 16 classes" in flat  # the real scale, never "demo scale"
    loaded = " ".join(table_one["loaded here"])
    assert "A · hf_tsn_demo (width ×0.25, 64 px, 8 frames, 16 classes)" in loaded and "demo scale" not in loaded


def test_only_one_model():
    at = new_app()
    at.query_params["b"] = "none"
    at.run()
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    assert [h.value for h in at.subheader][0] == "A · hf_tsn_demo"
    assert "B · tsn_demo" not in [h.value for h in at.subheader]


def test_scale_words_follow_the_config():
    """Table I's scale is named as such; anything else by its real width, size, frames and classes."""
    from types import SimpleNamespace

    from app.model_facts import scale_vs_paper

    def ckpt(width, size, frames, classes):
        cfg = SimpleNamespace(width_mult=width, input_size=size, num_segments=frames)
        return SimpleNamespace(config=cfg, class_names=[f"c{i}" for i in range(classes)])

    assert scale_vs_paper(ckpt(1.0, 224, 16, 174)) == "at the paper's scale"
    assert scale_vs_paper(ckpt(1.0, 224, 8, 174)) == "width ×1, 224 px, 8 frames, 174 classes"
    assert scale_vs_paper(ckpt(0.25, 112, 8, 16)) == "width ×0.25, 112 px, 8 frames, 16 classes"


def test_a_full_width_model_is_described_by_its_real_scale(tmp_path, monkeypatch):
    """Issue 9: a width-1.0 BN-Inception with Something's 174 classes is never "(at demo scale)": the card
    names its real width, input size and frames."""
    import torch

    from hfnet_core.checkpoint import save_checkpoint
    from hfnet_core.model import build_model

    torch.manual_seed(0)
    model = build_model("hf_tsn_bninception", width_mult=1.0, input_size=96, num_segments=4, num_classes=174).eval()
    d = tmp_path / "full"
    d.mkdir()
    save_checkpoint(d / "hf_tsn_full.safetensors", model, [f"Something-v1 class {i}" for i in range(174)])
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = new_app()
    at.query_params["b"] = "none"
    at.run()
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    flat = " ".join(str(t.value.to_dict()) for t in at.table)
    assert "width ×1, 96 px, 4 frames, 174 classes" in flat
    assert "bninception (width ×1)" in flat and "96×96 px" in flat
    everything = " ".join(texts(at, "markdown") + texts(at, "caption") + [flat]
                          + [" ".join(map(str, df.value.to_numpy().ravel())) for df in at.dataframe])
    assert "demo scale" not in everything
