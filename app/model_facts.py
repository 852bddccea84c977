"""What the app needs to know about a model's architecture, read in ONE place.

Every page asks these functions, never ``model.hf_blocks`` / ``config.temporal`` / ``base_model``
directly, so a change in how ``hfnet_core`` describes its temporal operators is adapted here alone. They
read ``model.describe()`` (``hf_blocks``, ``hf_conservative``, ``temporal``), for the last block the
backbone's ``block_names``, and for TSM's channel share the operator modules themselves
(``model.operators("tsm")``: their channel count and ``shift_div``).
"""

from __future__ import annotations

from typing import Any

from hfnet_core.multitask import TaskSpec

__all__ = ["hf_blocks", "last_block", "operators", "operator_kinds", "hf_conservative", "temporal_summary",
           "matches_table_row", "matches_operator_row", "model_kind", "hf_summary", "class_words", "scale_words", "scale_vs_paper",
           "PAPER_SCALE", "OPERATOR_NAMES", "operator_rows", "tsm_shift_divs", "tsm_channel_shares",
           "mixing_words"]


def hf_blocks(checkpoint: Any) -> list[str]:
    """Names of the blocks followed by an HF module, in network order (empty for a plain TSN/TRN)."""
    return list(checkpoint.model.describe().get("hf_blocks") or [])


def last_block(checkpoint: Any) -> str:
    """The backbone's last block (Grad-CAM's default layer; HF after it alone cannot change TSN logits)."""
    return list(checkpoint.model.base_model.block_names)[-1]


def operators(checkpoint: Any) -> list[dict[str, Any]]:
    """The model's temporal operators: [{"op": "hf", "sites": [...], ...}, ...] (empty: a plain TSN/TRN)."""
    return list(checkpoint.model.describe().get("temporal") or [])


def operator_kinds(checkpoint: Any) -> list[str]:
    """The model's operator kinds in network order of their first site: ["hf"], ["gsm"], ["tsm", "hf"], []."""
    return [e["op"] for e in operators(checkpoint)]


def hf_conservative(checkpoint: Any) -> bool | None:
    """Whether the HF modules conserve the feature sum (the paper's HF); None without HF."""
    return checkpoint.model.describe().get("hf_conservative")


def temporal_summary(checkpoint: Any) -> str:
    """"HF at 10 sites" / "TSM at 10 sites; HF at 10 sites" / "none (plain TSN)"."""
    ops = operators(checkpoint)
    return "; ".join(f"{e['op'].upper()} at {len(e['sites'])} sites" for e in ops) or "none (plain TSN)"


def matches_table_row(checkpoint: Any, row: dict[str, Any]) -> bool:
    """Whether the model has the architecture of a Table I row (``complexity.table_one``): a TSN (average
    consensus, as every Table I row) with HF (or nothing) after the row's blocks, with the row's kind of HF."""
    if operator_kinds(checkpoint) not in (["hf"], []) or str(checkpoint.config.consensus) != "avg":
        return False
    return hf_blocks(checkpoint) == list(row["hf_blocks"]) and hf_conservative(checkpoint) in (None, row["conservative"])


def model_kind(checkpoint: Any) -> str:
    """A short family name built from the architecture: "HF-TSN", "TSN", "HF-TRN", "TSM (TSN head)",
    "ECO-Lite", "multi-task HF-TSN"."""
    cfg = checkpoint.config
    head = {"avg": "TSN", "trn": "TRN", "gru": "GRU", "multitask": "TSN"}.get(str(cfg.consensus),
                                                                            str(cfg.consensus).upper())
    if str(getattr(cfg, "backbone", "")) == "eco_lite":
        head = "ECO-Lite"
    prefix = "multi-task " if str(cfg.consensus) == "multitask" else ""
    ops = [e["op"] for e in operators(checkpoint)]
    if not ops:
        return prefix + head
    if ops == ["hf"]:
        return f"{prefix}HF-{head}" if head != "ECO-Lite" else "HF-ECOLite"
    return prefix + "+".join(op.upper() for op in ops) + f" ({head} head)"


def hf_summary(checkpoint: Any) -> str:
    """"HF after 10 blocks" or "no HF"."""
    n = len(hf_blocks(checkpoint))
    return f"HF after {n} block{'s' if n != 1 else ''}" if n else "no HF"


def scale_words(checkpoint: Any) -> str:
    """The real scale of the model: "BN-Inception ×0.25 · 112 px · 8 frames · 16 classes"."""
    cfg = checkpoint.config
    backbone = {"bninception": "BN-Inception"}.get(cfg.backbone, cfg.backbone)
    width = "" if float(cfg.width_mult) == 1.0 else f" ×{float(cfg.width_mult):g}"
    return f"{backbone}{width} · {cfg.input_size} px · {cfg.num_segments} frames · {class_words(checkpoint)}"


def class_words(checkpoint: Any) -> str:
    """What the model's outputs are: "16 classes", or "16 verbs, 6 nouns, 82 actions" for a multi-task one."""
    spec = TaskSpec.from_model(checkpoint.config, checkpoint.class_names)
    if spec is None:
        return f"{len(checkpoint.class_names)} classes"
    return f"{spec.num_verbs} verbs, {spec.num_nouns} nouns, {len(spec.actions)} actions"


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
            f"{class_words(checkpoint)}")


# --------------------------------------------------------------------------------------------------
# Each temporal operator, for Gate maps and the model cards

#: Operator kind -> its name and paper, as the app writes it.
OPERATOR_NAMES = {
    "hf": "HF (hierarchical feature aggregation, this paper)",
    "gsm": "GSM (gate-shift module, Sudhakaran et al. 2020)",
    "tsm": "TSM (temporal shift module, Lin et al. 2019)",
}


def _module(site_key: str) -> str:
    return site_key.rpartition(":")[0] or site_key


def _short(module: str) -> str:
    return module.split("inception_", 1)[1] if module.startswith("inception_") else module


def _where(entry: dict[str, Any]) -> str:
    """Where an operator's sites are, in words: "after 3a, 3b, …" / "before 3a, …" / "between … and its BN"."""
    sites = list(entry["sites"])
    names = ", ".join(_short(_module(s)) for s in sites)
    if entry["op"] == "gsm":
        return f"between a convolution and its BatchNorm: {names}"
    sides = {s.rpartition(":")[2] for s in sites}
    if sides == {"out"}:
        return f"after {names}"
    if sides == {"in"}:
        return f"before {names}" + (" (on the block's input, before all its branches)" if entry["op"] == "tsm"
                                    else "")
    return ", ".join(f"{s.rpartition(':')[2]} of {_short(_module(s))}" for s in sites)


def _options(entry: dict[str, Any]) -> str:
    """The operator's options in words (TSM's fold is per site, so only its shift_div is named here)."""
    rest = {k: v for k, v in entry.items() if k not in ("op", "sites", "params", "fold")}
    words = []
    if "conservative" in rest:
        words.append("conservative (paper)" if rest.pop("conservative") else "non-conservative (Table I ablation)")
    if "shift_div" in rest:
        d = int(rest.pop("shift_div"))
        words.append(f"shift_div {d}: 2/{d} = {2 / d:.0%} of the channels move (1/{d} from each neighbour), fixed")
    if "impl" in rest:
        words.append(f"gate implementation: {rest.pop('impl')}")
    words += [f"{k} = {v}" for k, v in rest.items()]
    if entry["op"] == "gsm" and not words:
        words.append("no options: 2 learned gates per place (tanh of a grouped 3×3×3 convolution)")
    return "; ".join(words) or "-"


def operator_rows(checkpoint: Any, flops: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per operator kind of the model: ``op``, ``name``, ``sites`` (count), ``where``, ``options``,
    ``params`` and, given ``complexity.count_flops``' result, ``flops`` (the sum of its sites'
    ``temporal_sites``) and ``flops_share`` (of the clip's total)."""
    rows = []
    for e in operators(checkpoint):
        row = {"op": e["op"], "name": OPERATOR_NAMES.get(e["op"], e["op"].upper()), "sites": len(e["sites"]),
               "where": _where(e), "options": _options(e), "params": int(e.get("params", 0))}
        if flops is not None:
            per_site = flops.get("temporal_sites") or {}
            cost = sum(int(per_site.get(f"{e['op']}.{_module(s)}", 0)) for s in e["sites"])
            row.update(flops=cost, flops_share=cost / max(int(flops["total"]), 1))
        rows.append(row)
    return rows


def tsm_shift_divs(checkpoint: Any) -> list[int]:
    """The distinct ``shift_div`` of the model's TSM sites (one value for every model hfnet builds)."""
    return sorted({int(m.shift_div) for _, _, m in checkpoint.model.operators("tsm")})


def tsm_channel_shares(checkpoint: Any) -> dict[str, float]:
    """"tsm.<module>" -> the share of that site's channels the shift moves, 2 * (C // shift_div) / C (exactly
    2 / shift_div when C divides; integer division as in the original otherwise)."""
    return {f"tsm.{s.module}": 2 * (int(m.channels) // int(m.shift_div)) / int(m.channels)
            for _, s, m in checkpoint.model.operators("tsm")}


def mixing_words(checkpoint: Any) -> str:
    """Where a model without temporal operators first lets frames meet: "the final average (a plain TSN)"."""
    consensus = str(checkpoint.config.consensus)
    if consensus == "trn":
        return "the relation head, which sees each frame's pooled features (a plain TRN)"
    if consensus == "gru":
        return "the GRU, which reads the frames' pooled features in order"
    if str(getattr(checkpoint.config, "backbone", "")) == "eco_lite":
        return "the 3D ResNet, which convolves the stacked 2D feature maps over time (a plain ECO-Lite)"
    return f"the final average (a plain {model_kind(checkpoint)})"


def matches_operator_row(checkpoint: Any, row: dict[str, Any]) -> bool:
    """Whether the model has the architecture of a row of ``complexity.operator_table``: the row's backbone
    and consensus, and the same number of sites of each operator kind (any width, size, frames)."""
    from hfnet_core.model import get_config  # the registry, with the zoo's names registered

    ref = get_config(row["model"])
    mine = {e["op"]: len(e["sites"]) for e in operators(checkpoint)}
    return (checkpoint.config.backbone == ref.backbone and checkpoint.config.consensus == ref.consensus
            and mine == dict(row["operators"]))
