"""What the app needs to know about a model's architecture, read in ONE place.

Every page asks these functions, never ``model.hf_blocks`` / ``config.temporal`` / ``base_model``
directly, so a change in how ``hfnet_core`` describes its temporal operators is adapted here alone. They
read ``model.describe()`` (``hf_blocks``, ``hf_conservative``, ``temporal``) and, for the last block, the
backbone's ``block_names``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["hf_blocks", "last_block", "operators", "hf_conservative", "temporal_summary", "matches_table_row",
           "model_kind", "hf_summary", "scale_words", "scale_vs_paper", "PAPER_SCALE"]


def hf_blocks(checkpoint: Any) -> list[str]:
    """Names of the blocks followed by an HF module, in network order (empty for a plain TSN/TRN)."""
    return list(checkpoint.model.describe().get("hf_blocks") or [])


def last_block(checkpoint: Any) -> str:
    """The backbone's last block (Grad-CAM's default layer; HF after it alone cannot change TSN logits)."""
    return list(checkpoint.model.base_model.block_names)[-1]


def operators(checkpoint: Any) -> list[dict[str, Any]]:
    """The model's temporal operators: [{"op": "hf", "sites": [...], ...}, ...] (empty: a plain TSN/TRN)."""
    return list(checkpoint.model.describe().get("temporal") or [])


def hf_conservative(checkpoint: Any) -> bool | None:
    """Whether the HF modules conserve the feature sum (the paper's HF); None without HF."""
    return checkpoint.model.describe().get("hf_conservative")


def temporal_summary(checkpoint: Any) -> str:
    """"HF at 10 sites" / "TSM at 10 sites; HF at 10 sites" / "none (plain TSN)"."""
    ops = operators(checkpoint)
    return "; ".join(f"{e['op'].upper()} at {len(e['sites'])} sites" for e in ops) or "none (plain TSN)"


def matches_table_row(checkpoint: Any, row: dict[str, Any]) -> bool:
    """Whether the model has the architecture of a Table I row (``complexity.table_one``): HF (or nothing)
    after the row's blocks, with the row's kind of HF."""
    if [e["op"] for e in operators(checkpoint)] not in (["hf"], []):
        return False
    return hf_blocks(checkpoint) == list(row["hf_blocks"]) and hf_conservative(checkpoint) in (None, row["conservative"])


def model_kind(checkpoint: Any) -> str:
    """A short family name built from the architecture: "HF-TSN", "TSN", "HF-TRN", "TSM (TSN head)"."""
    head = {"avg": "TSN", "trn": "TRN"}.get(str(checkpoint.config.consensus), str(checkpoint.config.consensus).upper())
    ops = [e["op"] for e in operators(checkpoint)]
    if not ops:
        return head
    if ops == ["hf"]:
        return f"HF-{head}"
    return "+".join(op.upper() for op in ops) + f" ({head} head)"


def hf_summary(checkpoint: Any) -> str:
    """"HF after 10 blocks" or "no HF"."""
    n = len(hf_blocks(checkpoint))
    return f"HF after {n} block{'s' if n != 1 else ''}" if n else "no HF"


def scale_words(checkpoint: Any) -> str:
    """The real scale of the model: "BN-Inception ×0.25 · 112 px · 8 frames · 16 classes"."""
    cfg = checkpoint.config
    backbone = {"bninception": "BN-Inception"}.get(cfg.backbone, cfg.backbone)
    width = "" if float(cfg.width_mult) == 1.0 else f" ×{float(cfg.width_mult):g}"
    return (f"{backbone}{width} · {cfg.input_size} px · {cfg.num_segments} frames · "
            f"{len(checkpoint.class_names)} classes")


#: The paper's Table I setting (Something-v1, BN-Inception): what "at the paper's scale" means.
PAPER_SCALE = {"width_mult": 1.0, "input_size": 224, "num_segments": 16, "num_classes": 174}


def scale_vs_paper(checkpoint: Any) -> str:
    """The model's real scale beside Table I's: "at the paper's scale", or "width ×0.25, 112 px, 8 frames,
    16 classes" - never a blanket "demo scale"."""
    cfg = checkpoint.config
    mine = {"width_mult": float(cfg.width_mult), "input_size": int(cfg.input_size),
            "num_segments": int(cfg.num_segments), "num_classes": len(checkpoint.class_names)}
    if mine == PAPER_SCALE:
        return "at the paper's scale"
    return (f"width ×{mine['width_mult']:g}, {mine['input_size']} px, {mine['num_segments']} frames, "
            f"{mine['num_classes']} classes")
