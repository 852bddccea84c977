"""Parameters and FLOPs the way the paper's Table I counts them, and Table I itself beside ours.

Conventions (the ones that reproduce Table I's printed digits; docs/complexity.md has the derivation):

* **Params ("paper")**: every tensor of the state dict: weights, biases and the BN running mean/var, but
  not BN's ``num_batches_tracked`` counter (PyTorch added it after TSN-era code; it is a step counter, not
  a model value, and counting it or not changes no printed digit). Baseline: 10,468,622 -> 10.47M. The
  trainable count (10,448,590 -> 10.45M) is reported too - it is what the GSM paper prints.
* **FLOPs**: multiply-accumulates (MACs), i.e. ``FlopCounterMode``'s count (2 per MAC) halved, for the
  convolutions and the classifier, bias additions not counted; plus 2 per BatchNorm output element
  (scale, shift), 1 per ReLU output element and 1 per pooling *input* element (max, average and the global
  average pool).
* **Temporal operators** declare their own cost in those units (``TemporalOperator.cost``), whatever
  implementation runs: HF's gate is a 2x3x3 conv3d with one output channel (18*C MACs per gate pixel);
  GSM's is a grouped 3x3x3 conv3d (27*C MACs per pixel) plus its BN3d and ReLU; TSM moves data (0).
  What is left - HF's tanh and the products/sums of Eq. 7, GSM's gating arithmetic - is counted
  separately (``temporal_elementwise``) and left out of the paper total: Table I's +10HF row (+0.34G =
  exactly the gate MACs) leaves no room for it.

The backbone and head are counted on the model with its operators removed (``ModelConfig.without_temporal``)
and each operator's declared cost is added at the input shape it sees, read from one shape-only
``forward_intermediates`` pass. Everything runs on the ``meta`` device (shapes only), so counting a
16-frame full-width model takes about a second and allocates nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .errors import ConfigError
from .model import ModelConfig, VideoClassifier, hf_key

#: Ops per element that the paper convention charges (see module docstring).
BN_OPS_PER_ELEMENT = 2
RELU_OPS_PER_ELEMENT = 1
POOL_OPS_PER_INPUT_ELEMENT = 1
#: MACs per gate pixel per input channel of the HF gate: a 2x3x3 kernel.
HF_GATE_TAPS = 2 * 3 * 3

_BN_OPS = {"native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
           "cudnn_batch_norm", "miopen_batch_norm"}
_RELU_OPS = {"relu", "relu_"}
_POOL_OPS = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d",
             "_adaptive_avg_pool2d", "adaptive_max_pool2d", "max_pool3d", "max_pool3d_with_indices",
             "avg_pool3d"}


# --- parameters -----------------------------------------------------------------------------------


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameter counts of ``model``.

    Returns ``paper`` (state dict without ``num_batches_tracked``: what Table I counts), ``trainable``,
    ``parameters`` (all, trainable or not), ``running_stats`` (BN running mean/var), ``num_batches_tracked``,
    ``temporal`` (every temporal operator's parameters) and ``hf`` (HF gate parameters).
    """
    state = model.state_dict()
    nbt = sum(v.numel() for k, v in state.items() if k.endswith("num_batches_tracked"))
    running = sum(v.numel() for k, v in state.items() if k.endswith(("running_mean", "running_var")))
    ops = model.operators() if isinstance(model, VideoClassifier) else []
    return {
        "paper": sum(v.numel() for v in state.values()) - nbt,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
        "running_stats": running,
        "num_batches_tracked": nbt,
        "temporal": sum(p.numel() for _, _, m in ops for p in m.parameters()),
        "hf": sum(p.numel() for o, _, m in ops if o == "hf" for p in m.parameters()),
    }


# --- FLOPs ----------------------------------------------------------------------------------------


class _OpCounter(TorchDispatchMode):
    """Counts the non-GEMM ops of the paper convention (BN, ReLU, pooling) from the aten ops that run."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = self.relu = self.pool = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in _BN_OPS:
            self.bn += BN_OPS_PER_ELEMENT * args[0].numel()
        elif name in _RELU_OPS:
            self.relu += RELU_OPS_PER_ELEMENT * args[0].numel()
        elif name in _POOL_OPS or (name == "mean" and args[0].dim() == 4):  # mean over H, W = GAP
            self.pool += POOL_OPS_PER_INPUT_ELEMENT * args[0].numel()
        return out


def _meta(cfg: ModelConfig) -> VideoClassifier:
    with torch.device("meta"):
        return VideoClassifier(cfg).eval()


def _count_plain(model: VideoClassifier, x: torch.Tensor) -> tuple[int, _OpCounter]:
    ops = _OpCounter()
    flops = FlopCounterMode(display=False)
    with torch.no_grad(), flops, ops:
        model(x)
    return flops.get_total_flops() // 2, ops


def count_flops(model: nn.Module, num_frames: int | None = None, size: int | None = None) -> dict[str, Any]:
    """FLOPs of one clip (``num_frames`` frames of ``size`` x ``size`` px), paper convention.

    Defaults come from ``model.config``. The model itself is not run: shape-only copies are built on the
    ``meta`` device. Returns counts (not G): ``conv_linear_macs``, ``bn``, ``relu``, ``pool`` (backbone +
    head), ``temporal_macs`` / ``temporal_bn`` / ``temporal_relu`` (what the operators declare),
    ``temporal_elementwise`` (declared, not in the total), ``temporal_sites`` ("<op>.<module>" -> its
    counted cost), ``total`` (paper convention), ``total_with_elementwise``, ``temporal_counted_conv_macs``
    (what the running implementations actually multiply) and, for HF, ``hf_gate_macs``, ``hf_elementwise``
    and ``hf_blocks`` (block -> gate MACs).
    """
    if not isinstance(model, VideoClassifier):
        raise TypeError(f"count_flops needs a VideoClassifier, got {type(model).__name__}")
    cfg = model.config
    t = int(num_frames if num_frames is not None else cfg.num_segments)
    s = int(size if size is not None else cfg.input_size)
    cfg = cfg.replace(num_segments=t, input_size=s)
    x = torch.empty(1, t, 3, s, s, device="meta")
    base_macs, ops = _count_plain(_meta(cfg.without_temporal()), x)
    full = _meta(cfg)
    with torch.no_grad():
        records = full.inspect(x).temporal
    sites: dict[str, int] = {}
    macs = bn = relu = elem = 0
    hf_blocks: dict[str, int] = {}
    hf_elem = 0
    for label, rec in records.items():
        c = full.operator_at(rec.op, rec.site).cost(rec.input_shape)
        macs, bn, relu, elem = macs + c["macs"], bn + c["bn"], relu + c["relu"], elem + c["elementwise"]
        sites[label] = c["macs"] + c["bn"] + c["relu"]
        if rec.op == "hf":
            hf_blocks[rec.site.module] = c["macs"]
            hf_elem += c["elementwise"]
    counted = 0
    if records:
        full_macs, _ = _count_plain(full, x)
        counted = full_macs - base_macs
    total = base_macs + ops.bn + ops.relu + ops.pool + macs + bn + relu
    return {
        "num_frames": t,
        "size": s,
        "conv_linear_macs": base_macs,
        "bn": ops.bn,
        "relu": ops.relu,
        "pool": ops.pool,
        "temporal_macs": macs,
        "temporal_bn": bn,
        "temporal_relu": relu,
        "temporal_elementwise": elem,
        "temporal_sites": sites,
        "temporal_counted_conv_macs": counted,
        "hf_gate_macs": sum(hf_blocks.values()),
        "hf_elementwise": hf_elem,
        "hf_counted_conv_macs": counted if set(r.op for r in records.values()) == {"hf"} else None,
        "hf_blocks": hf_blocks,
        "total": total,
        "total_with_elementwise": total + elem,
    }


# --- Table I --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperRow:
    label: str
    placement: str
    conservative: bool
    accuracy: float
    params_m: float
    flops_g: float


#: Table I (Something-v1 validation, BNInception-TSN, 16 frames, 224 px, 174 classes).
PAPER_TABLE_ONE: tuple[PaperRow, ...] = (
    PaperRow("Baseline", "none", True, 17.77, 10.47, 32.73),
    PaperRow("Baseline+1HF", "last1", True, 19.37, 10.47, 32.81),
    PaperRow("Baseline+5HF", "last5", True, 34.15, 10.53, 32.90),
    PaperRow("Baseline+10HF", "all", True, 41.97, 10.59, 33.07),
    PaperRow("Baseline+10HF (non-Conservative)", "all", False, 38.81, 10.69, 33.47),
)
PAPER_SETTING = {"backbone": "bninception", "width_mult": 1.0, "num_classes": 174, "num_frames": 16,
                 "size": 224, "consensus": "avg"}


def _config(placement: str, conservative: bool, backbone: str, width_mult: float, num_classes: int,
            num_frames: int, size: int) -> ModelConfig:
    return ModelConfig(backbone=backbone, width_mult=width_mult, num_classes=num_classes,
                       num_segments=num_frames, input_size=size, consensus="avg").with_hf(
        placement, None if placement == "none" else conservative)


def _meta_build(cfg: ModelConfig) -> VideoClassifier:
    with torch.device("meta"):
        return VideoClassifier(cfg)


def per_block_costs(backbone: str = "bninception", width_mult: float = 1.0, num_frames: int = 16,
                    size: int = 224) -> dict[str, dict[str, int]]:
    """Params and gate MACs one conservative HF module adds after each block (paper convention)."""
    cfg = _config("all", True, backbone, width_mult, 2, num_frames, size)
    model = _meta_build(cfg)
    macs = count_flops(model, num_frames, size)["hf_blocks"]
    return {b: {"params": sum(p.numel() for p in model.hf[hf_key(b)].parameters()), "flops": macs[b]}
            for b in model.hf_blocks}


def consistent_placements(k: int, params_m: float, flops_g: float, base_params: int, base_flops: int,
                          costs: dict[str, dict[str, int]]) -> list[tuple[str, ...]]:
    """Sets of ``k`` blocks whose HF modules bring the baseline to the printed params/FLOPs digits."""
    found = []
    for combo in itertools.combinations(costs, k):
        p = base_params + sum(costs[b]["params"] for b in combo)
        f = base_flops + sum(costs[b]["flops"] for b in combo)
        if round(p / 1e6, 2) == params_m and round(f / 1e9, 2) == flops_g:
            found.append(combo)
    return found


def _placement_note(pr: PaperRow, row: dict[str, Any], base: dict[str, Any], model: VideoClassifier,
                    costs: dict[str, dict[str, int]]) -> str:
    """What the paper's printed params/FLOPs imply about where its k HF modules were."""
    k = len(model.hf_blocks)
    chans = model.base_model.block_channels
    lo = max((pr.params_m - 0.005) * 1e6 - base["params"], 0.0)
    hi = (pr.params_m + 0.005) * 1e6 - base["params"]
    short = lambda blocks: ",".join(b.replace("inception_", "") for b in blocks)  # noqa: E731
    text = (f"our {pr.placement} = {short(model.hf_blocks)} adds {(row['params'] - base['params']) / 1e3:.1f}k "
            f"params (sum of C = {sum(chans[b] for b in model.hf_blocks)}); the paper's {pr.params_m:.2f}M "
            f"implies {lo / 1e3:.1f}k-{hi / 1e3:.1f}k (sum of C = {lo / HF_GATE_TAPS:.0f}-{hi / HF_GATE_TAPS:.0f}). ")
    fits = consistent_placements(k, pr.params_m, pr.flops_g, base["params"], base["flops"], costs)
    if k == 1 and not fits:
        by_params = [b for b, c in costs.items() if lo <= c["params"] < hi]
        biggest = max(costs, key=lambda b: costs[b]["flops"])
        return text + (f"No single block fits both printed numbers: the params admit only "
                       f"{short(by_params) or 'none'}, and +{pr.flops_g - base['paper_flops_g']:.2f}G is more "
                       f"than any one gate adds (max {costs[biggest]['flops'] / 1e9:.3f}G, {short([biggest])}).")
    if not fits:
        return text + f"No set of {k} blocks fits both printed numbers."
    names = list(costs)
    runs = [f for f in fits if names.index(f[-1]) - names.index(f[0]) == k - 1]
    return text + (f"{len(fits)} sets of {k} blocks fit both printed numbers (e.g. {short(fits[0])}); "
                   + (f"contiguous: {'; '.join(short(f) for f in runs)}." if runs else "none is a contiguous run."))


def table_one(backbone: str = "bninception", width_mult: float = 1.0, num_classes: int = 174,
              num_frames: int = 16, size: int = 224) -> list[dict[str, Any]]:
    """Table I recomputed for the given setting, each row beside the paper's numbers.

    Row keys: ``label``, ``placement``, ``hf_blocks``, ``conservative``, ``params`` (paper convention),
    ``params_trainable``, ``flops`` (paper convention), ``flops_with_elementwise``, ``params_m``, ``flops_g``
    (ours, rounded as printed), ``paper_params_m``, ``paper_flops_g``, ``paper_accuracy``, ``params_match``
    / ``flops_match`` (None unless the setting is the paper's), ``notes`` (list of str).
    """
    paper_setting = (backbone, width_mult, num_classes, num_frames, size) == (
        PAPER_SETTING["backbone"], PAPER_SETTING["width_mult"], PAPER_SETTING["num_classes"],
        PAPER_SETTING["num_frames"], PAPER_SETTING["size"])
    costs = per_block_costs(backbone, width_mult, num_frames, size) if paper_setting else {}
    rows: list[dict[str, Any]] = []
    base = None
    for pr in PAPER_TABLE_ONE:
        model = _meta_build(_config(pr.placement, pr.conservative, backbone, width_mult, num_classes,
                                    num_frames, size))
        params = count_params(model)
        flops = count_flops(model, num_frames, size)
        row: dict[str, Any] = {
            "label": pr.label,
            "placement": pr.placement,
            "hf_blocks": list(model.hf_blocks),
            "conservative": pr.conservative,
            "params": params["paper"],
            "params_trainable": params["trainable"],
            "flops": flops["total"],
            "flops_with_elementwise": flops["total_with_elementwise"],
            "params_m": round(params["paper"] / 1e6, 2),
            "flops_g": round(flops["total"] / 1e9, 2),
            "paper_params_m": pr.params_m,
            "paper_flops_g": pr.flops_g,
            "paper_accuracy": pr.accuracy,
            "params_match": None,
            "flops_match": None,
            "notes": [],
        }
        if base is None:
            base = row
        if paper_setting:
            row["params_match"] = row["params_m"] == pr.params_m
            row["flops_match"] = row["flops_g"] == pr.flops_g
        notes = row["notes"]
        if pr.placement == "last1":
            notes.append("HF after 5b only: with TSN's average consensus it cannot change eval-mode logits "
                         "(conservation + linear pooling/classifier/consensus) - degenerate.")
        if paper_setting and pr.conservative and pr.placement in ("last1", "last5") and not (
                row["params_match"] and row["flops_match"]):
            notes.append(_placement_note(pr, row, base, model, costs))
        if paper_setting and not pr.conservative and not (row["params_match"] and row["flops_match"]):
            notes.append(
                f"two full gates per block (the text: two independent 3D convolutions) give "
                f"{row['params_m']:.2f}M; the paper's {pr.params_m:.2f}M is our trainable count "
                f"({params['trainable'] / 1e6:.2f}M), but that count gives 10.45M for the baseline. Its "
                f"+{pr.flops_g - base['paper_flops_g']:.2f}G over the baseline exceeds our two gates' "
                f"{flops['hf_gate_macs'] / 1e9:.2f}G; with Eq. 7's element-wise ops "
                f"({flops['hf_elementwise'] / 1e9:.2f}G) ours is {flops['total_with_elementwise'] / 1e9:.2f}G. "
                f"The paper does not say what it counted."
            )
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: ours vs the paper's params and FLOPs, with a mark where digits differ."""
    head = f"{'Model':<34}{'Params':>9}{'paper':>8}  {'FLOPs':>8}{'paper':>8}  HF blocks"
    lines = [head, "-" * len(head)]
    notes = []

    def mark(ok: bool | None) -> str:
        return " " if ok in (True, None) else "*"

    for r in rows:
        blocks = ",".join(b.replace("inception_", "") for b in r["hf_blocks"]) or "-"
        lines.append(
            f"{r['label']:<34}{r['params_m']:>8.2f}M{r['paper_params_m']:>7.2f}M{mark(r['params_match'])}"
            f"{r['flops_g']:>8.2f}G{r['paper_flops_g']:>7.2f}G{mark(r['flops_match'])} {blocks}"
        )
        notes += [f"{r['label']}: {n}" for n in r["notes"]]
    lines.append("")
    lines.append("* = our digits differ from the paper's. Params: state dict incl. BN running stats "
                 "(no num_batches_tracked). FLOPs: multiply-adds + BN 2/elem + ReLU 1/elem + pool 1/input elem.")
    lines += notes
    return "\n".join(lines)


# --- temporal operators beside their papers ----------------------------------------------------------


@dataclass(frozen=True)
class PublishedRow:
    """A params/FLOPs figure printed by another work, for a model this library can build."""

    label: str
    model: str  # registry name
    frames: int
    num_classes: int
    params_m: float | None
    flops_g: float | None
    params_kind: str  # "trainable" or "state dict": how the source counts parameters
    source: str


#: Published counts we can set our own beside (Something-Something, 224 px, 174 classes).
PUBLISHED_OPERATORS: tuple[PublishedRow, ...] = (
    PublishedRow("TSN (BN-Inception)", "tsn_bninception", 8, 174, 10.45, 16.37, "trainable",
                 "GSM paper (Sudhakaran et al., CVPR 2020), Something-v1 ablation"),
    PublishedRow("GSM (BN-Inception)", "gsm_bninception", 8, 174, 10.50, 16.46, "trainable",
                 "GSM paper (Sudhakaran et al., CVPR 2020), Something-v1 ablation"),
    PublishedRow("HF-TSN (BN-Inception)", "hf_tsn_bninception", 16, 174, 10.59, 33.07, "state dict",
                 "HF-Net paper, Table I (+10HF)"),
    PublishedRow("TSM (BN-Inception)", "tsm_bninception", 8, 174, None, None, "-",
                 "no published count (TSM's BN-Inception variant is not in its model zoo)"),
    PublishedRow("TSM (ResNet-50)", "tsm_resnet50", 8, 174, 23.87, 32.88, "trainable",
                 "mmaction2 TSM model zoo (configs/recognition/tsm), Something-Something-V2 row"),
)


def operator_table() -> list[dict[str, Any]]:
    """Every temporal operator's model beside the published params/FLOPs (rows of ``PUBLISHED_OPERATORS``).

    Row keys: ``label``, ``model``, ``frames``, ``operators`` (op -> sites), ``params`` (state dict),
    ``params_trainable``, ``params_temporal``, ``flops`` (paper convention), ``macs`` (conv/linear
    multiply-adds incl. the operators'), ``published_params_m``, ``published_flops_g``, ``params_kind``,
    ``source``, ``match`` (True / False / None when nothing is published).
    """
    from .model import get_config

    rows = []
    for pr in PUBLISHED_OPERATORS:
        model = _meta_build(get_config(pr.model, num_segments=pr.frames, num_classes=pr.num_classes))
        p, f = count_params(model), count_flops(model)
        ours_p = p["trainable"] if pr.params_kind == "trainable" else p["paper"]
        match = None
        if pr.params_m is not None and pr.flops_g is not None:
            match = round(ours_p / 1e6, 2) == pr.params_m and round(f["total"] / 1e9, 2) == pr.flops_g
        ops: dict[str, int] = {}
        for o, _ in model.placements:
            ops[o] = ops.get(o, 0) + 1
        rows.append({
            "label": pr.label, "model": pr.model, "frames": pr.frames, "operators": ops,
            "params": p["paper"], "params_trainable": p["trainable"], "params_temporal": p["temporal"],
            "flops": f["total"], "macs": f["conv_linear_macs"] + f["temporal_macs"],
            "published_params_m": pr.params_m, "published_flops_g": pr.flops_g, "params_kind": pr.params_kind,
            "source": pr.source, "match": match,
        })
    return rows


def format_operator_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (f"{'Model':<24}{'frames':>6}  {'params':>8}{'trainable':>10}{'published':>10}  "
            f"{'FLOPs':>7}{'MACs':>8}{'published':>10}  operators")
    lines = [head, "-" * len(head)]
    for r in rows:
        pub_p = f"{r['published_params_m']:.2f}M" if r["published_params_m"] is not None else "-"
        pub_f = f"{r['published_flops_g']:.2f}G" if r["published_flops_g"] is not None else "-"
        ops = ", ".join(f"{o.upper()} x{n}" for o, n in r["operators"].items()) or "-"
        lines.append(f"{r['label']:<24}{r['frames']:>6}  {r['params'] / 1e6:>7.2f}M{r['params_trainable'] / 1e6:>9.2f}M"
                     f"{pub_p:>10}  {r['flops'] / 1e9:>6.2f}G{r['macs'] / 1e9:>7.2f}G{pub_f:>10}  {ops}")
    lines += ["", "params: state dict incl. BN running stats; trainable: what GSM and mmaction2 print. FLOPs: "
              "the HF paper's convention (MACs + BN/ReLU/pool elements); MACs: conv/linear multiply-adds only "
              "(mmaction2's tools count differently: its 32.88G for TSM-R50 is neither)."]
    lines += [f"{r['label']}: {r['source']}" for r in rows]
    return "\n".join(lines)


# --- the rest of the paper: Table II's models, the GRU consensus, EPIC-Kitchens --------------------

@dataclass(frozen=True)
class ModelRow:
    label: str
    model: str  # registered name
    num_classes: int  # the dataset the paper reports the model on (Something-v1 174, HMDB51 51)
    note: str = ""


#: Every model of the paper beyond Table I, at its setting (16 frames, 224 px). The paper prints no
#: params / FLOPs for them (only Fig. 4's plot); ECO's own paper's numbers could not be verified here, so
#: none are shown beside ours (docs/eco.md).
MODEL_ROWS: tuple[ModelRow, ...] = (
    ModelRow("TSN", "tsn_bninception", 174),
    ModelRow("HF-TSN", "hf_tsn_bninception", 174),
    ModelRow("TRN", "trn_bninception", 174, "TRN-pytorch multi-scale head (img_feature_dim 256)"),
    ModelRow("HF-TRN", "hf_trn_bninception", 174),
    ModelRow("ECOLite", "eco_lite", 51, "HMDB51 (the paper's ECO rows); ECO's published params/FLOPs "
             "not verified - none shown"),
    ModelRow("HF-ECOLite", "hf_eco_lite", 51, "HF after 3a and 3b (the 2D part's complete Inception blocks)"),
    ModelRow("GRU", "gru_bninception", 174, "GRU consensus, hidden 512"),
    ModelRow("HF-GRU", "hf_gru_bninception", 174),
    ModelRow("TSN (EPIC, verb + noun)", "epic_tsn_bninception", 477, "125 + 352 outputs, 8 segments as EPIC's"),
    ModelRow("HF-TSN (EPIC, verb + noun + action)", "mt_hf_tsn_bninception", 477,
             "without its action classifier, whose size is the number of training (verb, noun) pairs A: "
             "+1025 A params, +1024 A x frames FLOPs"),
)


def model_rows(rows: Sequence[ModelRow] = MODEL_ROWS, num_frames: int | None = None,
               size: int | None = None) -> list[dict[str, Any]]:
    """Params (paper convention, and trainable) and FLOPs of each row's model (``count_params`` /
    ``count_flops``, the conventions of Table I), built on the meta device."""
    from .model import get_config

    out = []
    for r in rows:
        cfg = get_config(r.model)
        if cfg.consensus != "multitask":
            cfg = cfg.replace(num_classes=r.num_classes)
        with torch.device("meta"):
            model = VideoClassifier(cfg)
        p, f = count_params(model), count_flops(model, num_frames, size)
        out.append({"label": r.label, "model": r.model, "num_classes": cfg.num_classes, "frames": f["num_frames"],
                    "size": f["size"], "params": p["paper"], "params_trainable": p["trainable"],
                    "params_temporal": p["temporal"], "flops": f["total"], "hf_gate_macs": f["hf_gate_macs"],
                    "params_m": round(p["paper"] / 1e6, 2), "flops_g": round(f["total"] / 1e9, 2), "note": r.note})
    return out


def format_model_rows(rows: Sequence[dict[str, Any]]) -> str:
    head = f"{'Model':<38}{'classes':>8}{'frames':>7}{'Params':>10}{'FLOPs':>10}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['label']:<38}{r['num_classes']:>8}{r['frames']:>7}{r['params_m']:>9.2f}M"
                     f"{r['flops_g']:>9.2f}G  {r['note']}")
    lines.append("Params: state dict incl. BN running stats; FLOPs: Table I's convention (multiply-adds + BN, ReLU, "
                 "pooling). The paper prints none for these models.")
    return "\n".join(lines)


# --- CLI ------------------------------------------------------------------------------------------


def cli_main(argv: Sequence[str] | None = None) -> int:
    """``hfnet complexity``: Table I beside ours, or the counts of one registered model."""
    ap = argparse.ArgumentParser(prog="hfnet complexity", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="count one registered model (or a saved checkpoint's) instead of Table I")
    ap.add_argument("--frames", type=int, default=None, help="frames per clip (Table I: 16)")
    ap.add_argument("--size", type=int, default=None, help="input side in px (Table I: 224)")
    ap.add_argument("--classes", type=int, default=174, help="classes for Table I (174 = Something-v1)")
    ap.add_argument("--width", type=float, default=1.0, help="BNInception width multiplier for Table I")
    ap.add_argument("--operators", action="store_true",
                    help="TSN, HF, TSM and GSM models beside their papers' published params/FLOPs")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--models", action="store_true", help="the rest of the paper (Table II's TSN / TRN / "
                    "ECO-Lite with and without HF, GRU, EPIC multi-task) instead of Table I")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.operators:
        rows = operator_table()
        print(json.dumps(rows, indent=2) if args.json else format_operator_table(rows))
        return 0
    if args.models:
        rows = model_rows(num_frames=args.frames, size=args.size)
        print(json.dumps(rows, indent=2) if args.json else format_model_rows(rows))
        return 0
    try:
        if args.model:
            from .model import get_config

            if args.model.endswith(".safetensors"):
                from .checkpoint import read_metadata

                cfg = ModelConfig.from_dict(read_metadata(args.model)["model_config"])
            else:
                cfg = get_config(args.model)
            with torch.device("meta"):
                model = VideoClassifier(cfg)
            out = {"model": args.model, "params": count_params(model),
                   "flops": count_flops(model, args.frames, args.size)}
            if args.json:
                print(json.dumps(out, indent=2))
            else:
                f = out["flops"]
                print(f"{args.model}: {out['params']['paper'] / 1e6:.2f}M params "
                      f"({out['params']['trainable'] / 1e6:.2f}M trainable), {f['total'] / 1e9:.2f}G FLOPs "
                      f"for {f['num_frames']} frames at {f['size']} px "
                      f"(conv/linear {f['conv_linear_macs'] / 1e9:.2f}G, BN {f['bn'] / 1e9:.3f}G, "
                      f"ReLU {f['relu'] / 1e9:.3f}G, pool {f['pool'] / 1e9:.3f}G, temporal operators "
                      f"{(f['temporal_macs'] + f['temporal_bn'] + f['temporal_relu']) / 1e9:.3f}G; their element-wise "
                      f"ops {f['temporal_elementwise'] / 1e9:.3f}G not included)")
            return 0
        rows = table_one(width_mult=args.width, num_classes=args.classes,
                         num_frames=args.frames or 16, size=args.size or 224)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from e
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
