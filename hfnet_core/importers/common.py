"""What every importer shares: options, the report, and the strict build-and-load step.

An importer is a key-mapping function (never a model subclass): it reads a foreign state dict and returns a
``Mapped`` - tensors under hfnet names (``base_model.*``, ``head.*``, ``gsm.*``), the backbone it found, the
temporal operators its keys show (``importers/temporal_keys.py``) and the facts the file records
(segments, consensus, class names). ``build_model_from`` then builds the
``VideoClassifier``, fixes the two known, harmless differences (Caffe's (1, C) BN tensors; BN
``num_batches_tracked`` counters older files lack) and loads strictly: every model key filled, every file
key used, or a ``CheckpointError`` naming the leftovers by their names *in the file*.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..native_checkpoint import LoadedCheckpoint, file_sha256, load_state_dict_strict
from ..errors import ConfigError, HfnetError
from ..input_convention import InputConvention
from ..limits import checked_meta_model
from ..model import ModelConfig, VideoClassifier

CONSENSUS_NAMES = {"avg": "avg", "tsn": "avg", "average": "avg", "trn": "trn", "identity": "identity"}


@dataclass
class ImportOptions:
    """What the caller knows that a foreign file may not record."""

    num_segments: int | None = None
    consensus: str | None = None
    classes_file: str | os.PathLike[str] | None = None
    drop_unknown: bool = False
    input_size: int | None = None
    #: the temporal operator the file was trained with where its keys cannot show it ("tsm" on
    #: BN-Inception), "none" to load it without one, None = what the keys show.
    temporal: str | None = None
    shift_div: int | None = None  # TSM: 1/shift_div of the channels move each way
    shift_place: str | None = None  # TSM: "blockres" or "block" (only where the keys do not show it)

    def __post_init__(self) -> None:
        if self.num_segments is not None and int(self.num_segments) < 1:
            raise ValueError(f"num_segments must be >= 1, got {self.num_segments}")
        if self.temporal is not None and self.temporal not in ("none", "tsm", "gsm", "hf"):
            raise ValueError(f"unknown temporal operator {self.temporal!r}; choose tsm, gsm, hf or none")
        if self.shift_div is not None and (isinstance(self.shift_div, bool) or not 2 <= int(self.shift_div) <= 1024):
            raise ValueError(f"shift_div must be an integer in 2..1024, got {self.shift_div}")
        if self.shift_place is not None and self.shift_place not in ("blockres", "block"):
            raise ValueError(f"shift_place must be 'blockres' or 'block', got {self.shift_place!r}")
        if self.consensus is not None:
            c = CONSENSUS_NAMES.get(str(self.consensus).lower())
            if c is None:
                raise ValueError(f"unknown consensus {self.consensus!r}; choose 'avg' (TSN) or 'trn'")
            self.consensus = c


@dataclass
class ImportReport:
    """What an import did: which format, what was renamed, squeezed, filled, dropped and recovered."""

    format: str
    source: str = ""
    backbone: str = ""
    width_mult: float = 1.0
    #: tensors loaded into the model, and how many changed name beyond a prefix (module., base_model., ...).
    mapped: int = 0
    renamed: int = 0
    #: file keys whose leading singleton dimension was removed (Caffe BN tensors stored as (1, C)).
    squeezed: list[str] = field(default_factory=list)
    #: model buffers the file lacks, set to their defaults (BN ``num_batches_tracked`` = 0).
    filled: list[str] = field(default_factory=list)
    #: file key -> why it was not loaded (a classifier not wanted, a module hfnet does not implement).
    dropped: dict[str, str] = field(default_factory=dict)
    #: model field -> {"value": ..., "source": where it came from (file field, tensor shape, argument)}.
    recovered: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: parameter-free operations of the original that hfnet does not implement (so outputs differ).
    not_implemented: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: scalar top-level fields of the file (epoch, arch, best_prec1, ...), for provenance.
    file_fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        """One line for logs (``hfnet train`` prints this after ``--pretrained``)."""
        return "; ".join(self.summary_lines(max_keys=3))

    def summary_lines(self, max_keys: int = 8) -> list[str]:
        """Human-readable lines for the CLI."""
        lines = [f"format: {self.format}", f"backbone: {self.backbone} (width {self.width_mult:g})",
                 f"mapped: {self.mapped} tensors ({self.renamed} renamed beyond a prefix)"]
        if self.squeezed:
            lines.append(f"squeezed (1, C) -> (C,): {len(self.squeezed)} tensors")
        if self.filled:
            lines.append(f"filled with defaults (absent from the file): {len(self.filled)} BN counters")
        for k, v in self.recovered.items():
            lines.append(f"{k} = {v['value']!r}  ({v['source']})")
        if self.dropped:
            lines.append(f"dropped: {len(self.dropped)} tensors")
            for k, why in list(self.dropped.items())[:max_keys]:
                lines.append(f"  - {k}: {why}")
            if len(self.dropped) > max_keys:
                lines.append(f"  ... (+{len(self.dropped) - max_keys} more)")
        lines += [f"NOT IMPLEMENTED: {n}" for n in self.not_implemented]
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


@dataclass
class Mapped:
    """A foreign state dict under hfnet names, plus what the file says about the model."""

    state: dict[str, Tensor]  # hfnet key -> tensor
    origin: dict[str, str]  # hfnet key -> key in the file (for messages)
    backbone: str
    width_mult: float
    input_convention: InputConvention
    #: fields the file records: name -> (value, source)
    facts: dict[str, tuple[Any, str]] = field(default_factory=dict)
    #: an image classifier: a clip of 1 frame unless the caller says otherwise.
    image_classifier: bool = False
    #: backbone tensors that may carry a Caffe leading singleton dimension
    squeezable: bool = False
    #: temporal operator entries (``ModelConfig.temporal``) and where each came from
    temporal: list[dict[str, Any]] = field(default_factory=list)
    temporal_source: str = ""
    #: options of the consensus head (TRN: img_feature_dim, bottleneck), read from tensor shapes
    consensus_args: dict[str, Any] = field(default_factory=dict)

    def put(self, new_key: str, file_key: str, tensor: Tensor) -> None:
        if new_key in self.state:
            raise CheckpointError(None, f"two keys of the file map to {new_key}: "
                                        f"{self.origin[new_key]} and {file_key}.")
        self.state[new_key] = tensor
        self.origin[new_key] = file_key


# --- reading the state dict out of a loaded object ---------------------------------------------------

def state_dict_of(obj: Any, path: Any = None) -> dict[str, Tensor]:
    """The tensor dict inside a checkpoint object: ``obj["state_dict"]``, ``obj["model"]`` or ``obj`` itself."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, not a dict of tensors.",
                              "hfnet imports state dicts (or dicts with a 'state_dict' entry).")
    for key in ("state_dict", "model", "model_state", "net"):
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and _all_tensors(inner):
            return dict(inner)
    if obj and _all_tensors(obj):
        return dict(obj)
    raise CheckpointError(
        path, f"has no state dict: top-level entries are {sorted(map(str, obj))[:12]}.",
        "Expected a dict of tensors, or a dict with a 'state_dict' entry.")


def _all_tensors(d: Mapping) -> bool:
    return all(isinstance(k, str) and isinstance(v, Tensor) for k, v in d.items())


def scalar_fields(obj: Any) -> dict[str, Any]:
    """Top-level fields worth keeping for provenance (numbers, strings, small lists), JSON-safe."""
    out: dict[str, Any] = {}
    if not isinstance(obj, Mapping):
        return out
    for k, v in obj.items():
        if isinstance(v, Tensor) and v.numel() == 1:
            v = v.item()
        elif hasattr(v, "item") and getattr(v, "size", 2) == 1:  # numpy scalar
            v = v.item()
        if isinstance(v, (bool, int, float, str)) and not (isinstance(v, str) and len(v) > 200):
            out[str(k)] = v
    return out


def namespace_fields(obj: Any) -> dict[str, Any]:
    """Fields of a saved ``args`` (argparse.Namespace or dict), if the file has one."""
    if not isinstance(obj, Mapping):
        return {}
    args = obj.get("args") or obj.get("opt") or obj.get("config")
    if args is None:
        return {}
    if isinstance(args, Mapping):
        return dict(args)
    if hasattr(args, "__dict__"):
        return dict(vars(args))
    return {}


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> dict[str, str]:
    """file key -> key without ``prefix`` (keys without it are kept as they are)."""
    return {k: (k[len(prefix):] if k.startswith(prefix) else k) for k in state}


def first_conv_width(t: Tensor, base: int = 64) -> float:
    return t.shape[0] / base


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "class-names file not found.", "Pass a text file with one class name per line.")
    names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


# --- resolving the model config ----------------------------------------------------------------------

def resolve_num_segments(mapped: Mapped, opts: ImportOptions, report: ImportReport, path: Any) -> int:
    recorded = mapped.facts.get("num_segments")
    if opts.num_segments is not None:
        n = int(opts.num_segments)
        if recorded is not None and int(recorded[0]) != n:
            report.warnings.append(
                f"num_segments={n} given, but the file records {recorded[0]} ({recorded[1]}); using {n}.")
        report.recovered["num_segments"] = {"value": n, "source": "argument"}
        return n
    if recorded is not None:
        report.recovered["num_segments"] = {"value": int(recorded[0]), "source": recorded[1]}
        return int(recorded[0])
    if mapped.image_classifier:
        report.recovered["num_segments"] = {"value": 1, "source": "image classifier: one frame per clip"}
        return 1
    raise CheckpointError(
        path, "does not record how many frames (segments) per clip the model was trained with.",
        "Pass it explicitly: `--num-segments N` (import_checkpoint(..., num_segments=N)); hfnet never "
        "guesses it from the file name.")


def resolve_consensus(mapped: Mapped, opts: ImportOptions, report: ImportReport) -> str:
    recorded = mapped.facts.get("consensus")
    if opts.consensus is not None:
        if recorded is not None and recorded[0] != opts.consensus:
            report.warnings.append(f"consensus={opts.consensus!r} given, but the file indicates "
                                   f"{recorded[0]!r} ({recorded[1]}); using {opts.consensus!r}.")
        report.recovered["consensus"] = {"value": opts.consensus, "source": "argument"}
        return opts.consensus
    value, source = recorded if recorded is not None else (
        "avg", "the file has no consensus parameters: average consensus (TSN)")
    report.recovered["consensus"] = {"value": value, "source": source}
    return value


def resolve_class_names(mapped: Mapped, opts: ImportOptions, num_classes: int, report: ImportReport,
                        path: Any) -> list[str]:
    if opts.classes_file is not None:
        names = read_class_names(opts.classes_file)
        source = f"classes file {opts.classes_file}"
    elif "class_names" in mapped.facts:
        names, source = list(mapped.facts["class_names"][0]), mapped.facts["class_names"][1]
    else:
        report.recovered["class_names"] = {"value": f"class_000 ... class_{num_classes - 1:03d}",
                                           "source": "generic (no classes file given)"}
        return [f"class_{i:03d}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise CheckpointError(path, f"has {num_classes} classes but {source} lists {len(names)} names.",
                              "Give one class name per line, in the classifier's order.")
    report.recovered["class_names"] = {"value": f"{len(names)} names", "source": source}
    return names


# --- unknown keys, shapes, strict load ------------------------------------------------------------------

def describe_unknown(file_key: str) -> str:
    """What an unmatched key of the file probably is."""
    k = file_key
    if "gsm" in k.lower() or "conv3D" in k:
        return "GSM module at a place this model does not have"
    if ".nl." in k or "non_local" in k:
        return "non-local block: not implemented in hfnet"
    if re.search(r"(^|\.)consensus\.classifier", k):
        return "single-scale TRN relation module: not implemented in hfnet (multi-scale TRN is)"
    if re.search(r"(^|\.)consensus\.", k) or "fc_fusion" in k:
        return "TRN relation module that does not fit this model's head"
    return "not part of the hfnet model"


def _short(items: list[str], n: int = 10) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


_PREFIXES = ("module.", "base_model.", "backbone.", "head.", "cls_head.")


def _core(key: str) -> str:
    """A key without the wrapper prefixes (DataParallel, model part), to count real renamings."""
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def check_and_fit(model: torch.nn.Module, mapped: Mapped, drop_unknown: bool, report: ImportReport,
                  path: Any) -> dict[str, Tensor]:
    """Match ``mapped.state`` to ``model``'s keys.

    Returns the state to load. Drops unknown keys only with ``drop_unknown``; squeezes Caffe's (1, C)
    tensors; fills missing ``num_batches_tracked``; raises a ``CheckpointError`` naming file keys for
    anything else (missing keys, wrong shapes, unknown modules).
    """
    own = model.state_dict()
    state = dict(mapped.state)

    unknown = {k: describe_unknown(mapped.origin[k]) for k in state if k not in own}
    if unknown:
        by_kind: dict[str, list[str]] = {}
        for k, why in unknown.items():
            by_kind.setdefault(why, []).append(mapped.origin[k])
        if not drop_unknown:
            parts = [f"{why}: {_short(sorted(keys))}" for why, keys in by_kind.items()]
            raise CheckpointError(
                path, f"holds {len(unknown)} tensors this model has no place for - " + "; ".join(parts) + ".",
                "Pass drop_unknown=True (`--drop-unknown`) to load the rest without them; the network then "
                "computes something different from the original, so its accuracy will not be the original's.")
        for k, why in unknown.items():
            report.dropped[mapped.origin[k]] = why
            del state[k]
        if any("not implemented" in w for w in by_kind):
            report.warnings.append("modules were dropped (see 'dropped'): outputs differ from the original model.")

    wrong = []
    for k, v in list(state.items()):
        want = tuple(own[k].shape)
        if tuple(v.shape) == want:
            continue
        if mapped.squeezable and v.dim() == len(want) + 1 and v.shape[0] == 1 and tuple(v.shape[1:]) == want:
            state[k] = v.squeeze(0)
            report.squeezed.append(mapped.origin[k])
            continue
        wrong.append(f"{mapped.origin[k]} is {tuple(v.shape)}, the model's {k} is {want}")
    missing = [k for k in own if k not in state]
    for k in list(missing):
        if k.endswith("num_batches_tracked"):
            state[k] = torch.zeros((), dtype=own[k].dtype)
            report.filled.append(k)
            missing.remove(k)
    if wrong or missing:
        parts = []
        if wrong:
            parts.append(f"wrong shapes ({len(wrong)}): " + _short(wrong, 6))
        if missing:
            parts.append(f"missing from the file ({len(missing)}): " + _short(missing))
        raise CheckpointError(
            path, "does not match the model it describes: " + "; ".join(parts) + ".",
            f"It was read as {report.format} with a {report.backbone} backbone (width {report.width_mult:g}); "
            "is the file complete, and is the format right (`--format`)?")
    report.mapped = sum(1 for k in state if k in mapped.origin)
    report.renamed = sum(1 for k in state if k in mapped.origin and _core(mapped.origin[k]) != _core(k))
    return state


def build_model_from(mapped: Mapped, opts: ImportOptions, report: ImportReport,
                     path: str | os.PathLike[str]) -> LoadedCheckpoint:
    """Build the ``VideoClassifier`` a mapped file describes and load it strictly, in eval mode."""
    multitask = "head.fc_verb.weight" in mapped.state  # EPIC-Kitchens' verb / noun heads
    fc = mapped.state.get("head.new_fc.weight", mapped.state.get("head.fc_verb.weight"))
    if fc is None:
        raise CheckpointError(
            path, "has no classifier, so it is not a complete video model.",
            "Use it to initialise a backbone instead: `hfnet train --pretrained PATH` "
            "(importers.load_pretrained_backbone).")
    if multitask:  # the output is [verb | noun] (hfnet_core/multitask.py)
        num_classes = int(mapped.consensus_args["verbs"]) + int(mapped.consensus_args["nouns"])
        source = f"shapes of {mapped.origin['head.fc_verb.weight']} and {mapped.origin['head.fc_noun.weight']}"
    else:
        classifier = "head.fc_fusion_scales.0.3.weight" if "head.fc_fusion_scales.0.3.weight" in mapped.state \
            else "head.new_fc.weight"  # TRN: new_fc projects to the relation features; the MLPs classify
        num_classes = int(mapped.state[classifier].shape[0])
        source = f"shape of {mapped.origin[classifier]}"
    report.recovered["num_classes"] = {"value": num_classes, "source": source}
    num_segments = resolve_num_segments(mapped, opts, report, path)
    consensus = resolve_consensus(mapped, opts, report)
    if mapped.temporal:
        report.recovered["temporal"] = {"value": mapped.temporal, "source": mapped.temporal_source}
    try:
        config = ModelConfig(
            backbone=mapped.backbone, width_mult=mapped.width_mult, num_classes=num_classes,
            num_segments=num_segments, input_size=int(opts.input_size or 224), consensus=consensus,
            consensus_args=mapped.consensus_args if consensus in ("trn", "multitask") else {},
            temporal=mapped.temporal,
            input_convention=mapped.input_convention.to_dict(), name=f"imported from {report.format}",
        )
    except ConfigError as e:
        raise CheckpointError(path, f"describes a model hfnet cannot use: {e.problem}", e.hint) from None
    report.backbone, report.width_mult = mapped.backbone, mapped.width_mult
    try:  # fields, memory, then keys and shapes - all on the meta device, before the real model exists
        state = check_and_fit(checked_meta_model(config, path), mapped, opts.drop_unknown, report, path)
        model = VideoClassifier(config)
    except ConfigError as e:
        raise CheckpointError(path, f"describes a model hfnet cannot use: {e.problem}", e.hint) from None
    except ValueError as e:
        if isinstance(e, HfnetError):
            raise
        raise CheckpointError(path, f"describes a model hfnet cannot build ({e}).") from None
    load_state_dict_strict(model, state, path)
    if multitask and opts.classes_file is None:
        from ..multitask import TaskSpec

        class_names = TaskSpec.from_model(config).class_names()
        report.recovered["class_names"] = {"value": "verb_000 ... / noun_000 ...",
                                           "source": "generic (EPIC's class CSVs name them)"}
    else:
        class_names = resolve_class_names(mapped, opts, num_classes, report, path)
    model.eval()
    meta = {
        "model_config": config.to_dict(),
        "class_names": class_names,
        "input_convention": model.input_convention.to_dict(),
        "training": {},
        "extra": {"imported_from": report.to_dict()},
    }
    return LoadedCheckpoint(model, config, class_names, meta, file_sha256(path), str(path), report.to_dict())
