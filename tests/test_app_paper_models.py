"""The paper's other models in the explorer (AppTest): HF-ECOLite's gate maps (HF inside its 2D part) and
model card, HF inside a GRU-consensus model."""

from __future__ import annotations

from _app_fixtures import assert_ok, make_model, page_from_link, player_spec, texts, titled_spec
from hfnet_core.checkpoint import save_checkpoint
from hfnet_core.data.synthetic import SYNTH_CLASSES

PAIRS = 7  # 8 frames -> 7 frame pairs


def _gate_page(ckpt_dir, monkeypatch, **query):
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(ckpt_dir))
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    return page_from_link("gate_maps", **query)


def test_hf_ecolite_gate_maps(tmp_path, monkeypatch):
    """HF-ECOLite: HF inside its 2D part (after 3a and 3b); the player, the layer pills and the locality
    chart cover those two layers; the model card names it."""
    save_checkpoint(tmp_path / "hf_eco_lite_demo.safetensors", make_model("hf_eco_lite_demo", 3),
                    list(SYNTH_CLASSES), training={"note": "random init"})
    at = _gate_page(tmp_path, monkeypatch, a="hf_eco_lite_demo.safetensors", b="none")
    assert any(m.startswith("**A · hf_eco_lite_demo** on") for m in texts(at, "markdown"))
    assert len(player_spec(at)["frames"]) == PAIRS
    assert list(at.button_group[0].options) == ["3a", "3b"]
    assert len(titled_spec(at, "How local")["data"][0]["y"]) == 2
    header = next(m for m in texts(at, "markdown") if "hf-header" in m)
    assert "HF-ECOLite, HF after 2 blocks" in header
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    card = " ".join(str(t.value) for t in at.table)
    assert "none: the 3D part gives one clip feature (ECO)" in card and "after 3a, 3b" in card


def test_gru_model_card_names_its_hidden_size(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "hf_gru_demo.safetensors", make_model("hf_gru_bninception_demo", 4),
                    list(SYNTH_CLASSES), training={"note": "random init"})
    at = _gate_page(tmp_path, monkeypatch, a="hf_gru_demo.safetensors", b="none")
    assert len(player_spec(at)["frames"]) == PAIRS  # HF inside a GRU model: the same gate maps
    at.switch_page("views/model_cards.py").run()
    assert_ok(at)
    card = " ".join(str(t.value) for t in at.table)
    assert "GRU over the frames (hidden size 128)" in card
    assert any("HF-GRU" in m for m in texts(at, "markdown"))
