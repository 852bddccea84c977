"""Load the checkpoints people already have: TSN / TSM / GSM, mmaction2, torchvision, Caffe BN-Inception.

Each format is a key-mapping function in its own file; this module detects the format, reads the file
without running code from it (``safe_load``), and builds a strictly loaded ``VideoClassifier``.

    import_checkpoint(path, ...)        -> LoadedCheckpoint (a complete video model, eval mode)
    load_pretrained_backbone(model, p)  -> ImportReport (fills model.base_model only; classifier dropped)
    detect_format(path_or_state)        -> "hfnet" | "caffe_bninception" | "tsn" | "tsm" | "gsm" | "eco"
                                           | "mmaction2" | "torchvision_resnet"

Formats and how they are recognised (keys after removing DataParallel's ``module.``):

    hfnet               safetensors file with hfnet metadata (passed to ``load_native_checkpoint`` unchanged)
    mmaction2           every key under backbone. / cls_head. (/ neck. / data_preprocessor.)
    eco                 TSN layout with ECO-Lite's 3D part (base_model.res3a_2.weight ...) -> eco_lite backbone
    gsm                 TSN layout (base_model.*) with gsm_<conv> / conv3D modules -> hfnet's GSM operator
    tsm                 TSN layout with TemporalShift wrappers (.net.) -> TSM's shift at those sites
                        (or non-local blocks, .nl., which hfnet does not implement)
    tsn                 TSN layout (base_model.* + new_fc.*; + consensus.fc_fusion_scales.* for TRN;
                        EPIC-Kitchens: fc_verb.* / fc_noun.* -> the multi-task head);
                        TSM on BN-Inception looks like this too: pass temporal="tsm"
    caffe_bninception   conv1_7x7_s2.weight at the top level (ImageNet BN-Inception; fc or last_linear)
    torchvision_resnet  conv1.weight, bn1.*, layer1.0.conv1.weight at the top level (fc optional)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..native_checkpoint import LoadedCheckpoint, load_native_checkpoint, load_state_dict_strict, read_metadata
from . import caffe_bninception, eco, mmaction, torchvision_resnet, tsn_family
from .common import ImportOptions, ImportReport, Mapped, build_model_from, check_and_fit, scalar_fields, state_dict_of
from ..model import ModelConfig
from ..paths import check_path_text, regular_file_problem
from .safe_load import looks_like_safetensors, read_pickled, read_safetensors

Mapper = Callable[[Any, dict, ImportOptions, ImportReport], Mapped]

#: format name -> (mapping function, one-line description). Detection order: see ``_detect_state``.
FORMATS: dict[str, tuple[Mapper | None, str]] = {
    "hfnet": (None, "hfnet's own .safetensors checkpoint"),
    "caffe_bninception": (caffe_bninception.map_state,
                          "ImageNet BN-Inception, Caffe names (TSN/TSM/GSM, pretrainedmodels)"),
    "tsn": (lambda o, s, opt, r: tsn_family.map_state(o, s, opt, r, "tsn"), "TSN-pytorch training checkpoint"),
    "tsm": (lambda o, s, opt, r: tsn_family.map_state(o, s, opt, r, "tsm"), "TSM training checkpoint"),
    "gsm": (lambda o, s, opt, r: tsn_family.map_state(o, s, opt, r, "gsm"), "GSM training checkpoint"),
    "eco": (eco.map_state, "ECO-pytorch ECO-Lite training checkpoint"),
    "mmaction2": (mmaction.map_state, "mmaction2 TSN/TSM recogniser (ResNet)"),
    "torchvision_resnet": (torchvision_resnet.map_state, "torchvision / timm ResNet-18/34/50/101 state dict"),
}


def _detect_state(state: Mapping[str, Tensor]) -> str | None:
    state = dict(state)
    if mmaction.detect(state):
        return "mmaction2"
    if eco.detect(state):
        return "eco"
    v = tsn_family.variant(state)
    if v is not None:
        return v
    if caffe_bninception.detect(state):
        return "caffe_bninception"
    if torchvision_resnet.detect(state):
        return "torchvision_resnet"
    return None


def _read(path: Path) -> tuple[str | None, Any]:
    """("hfnet", None) for a native file, else (None, the loaded object)."""
    problem = regular_file_problem(path)
    if problem:
        raise CheckpointError(path, problem, "Check the path.")
    if looks_like_safetensors(path):
        tensors, meta = read_safetensors(path)
        if "hfnet" in meta:
            read_metadata(path)  # validates the header (format, version) with its own errors
            return "hfnet", None
        return None, tensors
    return None, read_pickled(path)


def detect_format(state_or_path: str | os.PathLike[str] | Mapping[str, Any]) -> str:
    """The format name of a checkpoint file, a loaded checkpoint object or a state dict."""
    path = None
    obj: Any = state_or_path
    if isinstance(state_or_path, (str, os.PathLike)):
        path = Path(check_path_text(state_or_path))
        native, obj = _read(path)
        if native:
            return native
    fmt = _detect_state(state_dict_of(obj, path))
    if fmt is None:
        keys = sorted(state_dict_of(obj, path))
        raise CheckpointError(
            path, f"is not a checkpoint format hfnet recognises (first keys: {keys[:6]}).",
            f"Formats: {', '.join(FORMATS)}; name one with `--format` if the keys are right but unusual.")
    return fmt


def _with_path(e: CheckpointError, path: Path) -> CheckpointError:
    return e if e.path is not None else CheckpointError(path, str(e))


def import_checkpoint(
    path: str | os.PathLike[str],
    format: str | None = None,
    num_segments: int | None = None,
    consensus: str | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    drop_unknown: bool = False,
    input_size: int | None = None,
    temporal: str | None = None,
    shift_div: int | None = None,
    shift_place: str | None = None,
) -> LoadedCheckpoint:
    """Read a checkpoint of any supported format into a strictly loaded ``VideoClassifier`` (eval mode).

    Args:
        path: the file (.pth / .pth.tar / .pt / .safetensors).
        format: one of ``FORMATS``; None = detect from the keys.
        num_segments: frames per clip; needed when the file does not record it (TSN/TSM/GSM files).
        consensus: "avg" or "trn"; by default what the file records or, for files without consensus
            parameters, average consensus.
        classes_file: text file, one class name per line in classifier order (default: the file's own
            names if it has them, else class_000 ...).
        drop_unknown: load files with modules hfnet does not implement (GSM, non-local) without them;
            the report lists every dropped tensor.
        input_size: crop side the model expects (default 224).
        temporal: the temporal operator the file was trained with where its keys cannot show it ("tsm" for
            TSM on BN-Inception), or "none" to load it as a plain TSN; by default what the keys show
            (TSM on ResNet: ``.net.`` wrappers; GSM: ``gsm_*`` modules). Never read from the file name.
        shift_div / shift_place: TSM's settings where the file does not record them.

    The result's ``import_report`` says what was mapped, squeezed, filled, dropped and recovered.
    Raises ``CheckpointError`` naming the file and the keys for every problem.
    """
    p = Path(check_path_text(path))
    if format is not None and format not in FORMATS:
        raise CheckpointError(p, f"unknown format {format!r}.", f"Formats: {', '.join(FORMATS)}.")
    try:
        opts = ImportOptions(num_segments, consensus, classes_file, drop_unknown, input_size, temporal, shift_div,
                             shift_place)
    except ValueError as e:
        raise CheckpointError(p, str(e)) from None
    native, obj = _read(p)
    if native or format == "hfnet":
        if not native:
            raise CheckpointError(p, "is not an hfnet checkpoint.", "Drop `--format hfnet` to detect the format.")
        loaded = load_native_checkpoint(p)
        report = ImportReport("hfnet", str(p), loaded.config.backbone, loaded.config.width_mult,
                              mapped=len(loaded.model.state_dict()))
        given = {"num_segments": num_segments, "consensus": consensus, "classes_file": classes_file,
                 "input_size": input_size, "temporal": temporal, "shift_div": shift_div, "shift_place": shift_place}
        if any(v is not None for v in given.values()):
            report.warnings.append(f"ignored {sorted(k for k, v in given.items() if v is not None)}: an hfnet "
                                   "checkpoint records its own configuration.")
        loaded.import_report = report.to_dict()
        return loaded
    try:
        state = state_dict_of(obj, p)
        fmt = format or detect_format(obj)
        mapper = FORMATS[fmt][0]
        assert mapper is not None
        report = ImportReport(fmt, str(p), file_fields=scalar_fields(obj))
        mapped = mapper(obj, state, opts, report)
        return build_model_from(mapped, opts, report, p)
    except CheckpointError as e:
        raise _with_path(e, p) from None


def load_pretrained_backbone(model: torch.nn.Module, path: str | os.PathLike[str], format: str | None = None,
                             drop_unknown: bool = False) -> ImportReport:
    """Fill ``model.base_model`` from an ImageNet (or any supported) checkpoint, strictly.

    Every backbone key must be filled from the file, and every tensor of the file must be a backbone
    tensor, the file's classifier (dropped: the video model has its own) or, for video checkpoints, its
    HF modules; anything else is an error listing it (``drop_unknown=True`` drops and lists instead).
    """
    p = Path(check_path_text(path))
    base = getattr(model, "base_model", None)
    if base is None:
        raise CheckpointError(p, "cannot initialise this model: it has no base_model.")
    native, obj = _read(p)
    try:
        if native:
            tensors, _ = read_safetensors(p)
            cfg = read_metadata(p)["model_config"]  # fields type- and range-checked
            mapped = Mapped({}, {}, cfg.get("backbone", ModelConfig.backbone),
                            float(cfg.get("width_mult", ModelConfig.width_mult)), model.input_convention)
            for k, v in tensors.items():
                mapped.put(k, k, v)
            report = ImportReport("hfnet", str(p))
        else:
            fmt = format or detect_format(obj)
            mapper = FORMATS[fmt][0]
            assert mapper is not None
            report = ImportReport(fmt, str(p), file_fields=scalar_fields(obj))
            mapped = mapper(obj, state_dict_of(obj, p), ImportOptions(), report)
        want = getattr(model, "config", None)
        want_bb = want.backbone if want is not None else mapped.backbone
        if want_bb == "eco_lite" and mapped.backbone == "bninception":
            return _eco_2d_from_bninception(base, mapped, report, p, float(want.width_mult) if want else 1.0)
        if mapped.backbone != want_bb:
            raise CheckpointError(p, f"holds a {mapped.backbone} backbone; this model's backbone is {want_bb}.")
        if want is not None and abs(float(want.width_mult) - mapped.width_mult) > 1e-6:
            raise CheckpointError(p, f"holds a {mapped.backbone} of width {mapped.width_mult:g}; this model's "
                                     f"width_mult is {want.width_mult:g}.",
                                  "ImageNet weights fit full-width models (width_mult=1.0).")
        backbone = Mapped({}, {}, mapped.backbone, mapped.width_mult, mapped.input_convention,
                          squeezable=mapped.squeezable)
        for k, v in mapped.state.items():
            if k.startswith("base_model."):
                backbone.put(k[len("base_model."):], mapped.origin[k], v)
            elif k.startswith("head."):
                report.dropped[mapped.origin[k]] = "classifier (the video model has its own head)"
            elif k.startswith("hf."):
                report.dropped[mapped.origin[k]] = "HF module (only the backbone is initialised)"
            else:
                backbone.put(k, mapped.origin[k], v)  # unknown: named by the strict check below
        report.backbone, report.width_mult = mapped.backbone, mapped.width_mult
        state = check_and_fit(base, backbone, drop_unknown, report, p)
        load_state_dict_strict(base, state, p)
        return report
    except CheckpointError as e:
        raise _with_path(e, p) from None


def _eco_2d_from_bninception(base: torch.nn.Module, mapped: Mapped, report: ImportReport, path: Path,
                             width_mult: float) -> ImportReport:
    """ECO-Lite's 2D part from a BN-Inception file (how ECO is initialised): every 2D tensor must come from
    the file; the file's later layers and classifier are dropped (listed); the 3D part keeps its
    initialisation (listed under ``filled``)."""
    if abs(mapped.width_mult - width_mult) > 1e-6:
        raise CheckpointError(path, f"holds a BN-Inception of width {mapped.width_mult:g}; this ECO-Lite's "
                                    f"width_mult is {width_mult:g}.")
    own = base.state_dict()
    two_d = Mapped({}, {}, "eco_lite", mapped.width_mult, mapped.input_convention, squeezable=mapped.squeezable)
    for k, v in mapped.state.items():
        rel = k[len("base_model."):] if k.startswith("base_model.") else None
        if rel is not None and rel in own:
            two_d.put(rel, mapped.origin[k], v)
        else:
            report.dropped[mapped.origin[k]] = "not part of ECO-Lite's 2D part (later BN-Inception layers / classifier)"
    three_d = {k: own[k] for k in own if k.startswith("res")}
    for k, v in three_d.items():
        two_d.put(k, f"(ECO-Lite's own {k})", v)
    report.backbone, report.width_mult = "eco_lite", mapped.width_mult
    state = check_and_fit(base, two_d, False, report, path)
    load_state_dict_strict(base, state, path)
    report.filled += [f"{k} (3D part: not in an image model; keeps its initialisation)" for k in three_d]
    report.mapped -= len(three_d)
    report.renamed -= len(three_d)
    return report


__all__ = ["FORMATS", "ImportReport", "import_checkpoint", "detect_format", "load_pretrained_backbone"]
