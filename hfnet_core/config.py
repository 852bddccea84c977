"""Training configuration: one dataclass per concern, every default documented once, saved in checkpoints.

Defaults are the paper's recipe (Sec. IV-B): SGD with momentum 0.9, batch 32, lr 0.001 divided by 10
after epochs 25 and 40, 60 epochs, dropout 0.5 before the classifier, TSN's multi-scale crop + flip for
training, centre crop at test, 16 frames per clip. The paper does not give a weight decay; 5e-4 is TSN's.

A config comes from a TOML (or YAML) file plus ``section.key=value`` overrides::

    cfg = load_config("configs/hf_tsn_something.toml", ["optim.lr=0.01", "train.epochs=30"])

and ``cfg.to_dict()`` is what every checkpoint stores under ``training.config``, so a run can be rebuilt
from its checkpoint alone (``TrainConfig.from_dict``).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError


@dataclass
class ModelSection:
    """Which model to train. ``None`` fields keep the registry's value (``hfnet_core.model``)."""

    name: str = "hf_tsn_bninception"  # a registered model name (see ``available_models()``)
    num_classes: int | None = None  # None = the number of classes of the training dataset
    num_segments: int | None = None  # frames per clip; the registry default is the paper's 16
    input_size: int | None = None  # crop side in pixels; registry default 224
    width_mult: float | None = None
    dropout: float | None = None  # registry default 0.5 (paper)
    hf_placement: str | None = None  # shorthand for the HF entry: "none", "last1", "last5", "all" or block names
    hf_conservative: bool | None = None
    # Temporal operator entries replacing the registry's, e.g. [{op = "tsm", where = "all", args = {shift_div = 8}}]
    temporal: list[dict[str, Any]] | None = None
    pretrained: str | None = None  # an ImageNet BNInception file for the backbone (hfnet_core.importers)

    def overrides(self) -> dict[str, Any]:
        """The ``ModelConfig`` fields this section sets."""
        keys = ("num_classes", "num_segments", "input_size", "width_mult", "dropout", "temporal", "hf_placement",
                "hf_conservative")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


@dataclass
class DataSection:
    """Where clips come from and how they are augmented."""

    dataset: str = "synth"  # "synth" (generated in memory), "something-v1", "video-folder", "csv", "epic-kitchens"
    root: str = ""  # dataset folder (frames / videos); unused for synth
    train_split: str = "train"
    val_split: str = "val"
    train_list: str = ""  # annotation file of the training split (csv / something-v1), if not the default
    val_list: str = ""
    augment: bool = True  # multi-scale crop + horizontal flip (TSN); False = centre crop only
    num_workers: int = 2
    # SynthSomething only: clips per class of each split, the dataset seed, the rendered frame size
    # (0 = the model's input size) and whether each epoch draws fresh clips (seed + epoch) instead of
    # repeating the same ones.
    synth_train_per_class: int = 112
    synth_val_per_class: int = 20
    synth_test_per_class: int = 38
    synth_seed: int = 0
    synth_size: int = 0
    synth_fresh_each_epoch: bool = False
    # SynthSomething's labels: "action" (16 motion classes) or "verb_noun" (motion = verb, object shape =
    # noun; labels are action ids, for multi-task models: hfnet_core/multitask.py).
    synth_view: str = "action"
    # HMDB51 (video-folder + a folder of official split files as the list): which of the three splits.
    split_index: int = 1


@dataclass
class OptimSection:
    """SGD and its learning-rate schedule."""

    lr: float = 0.001  # paper
    momentum: float = 0.9
    weight_decay: float = 5e-4  # applied to weights only (not biases / BN parameters)
    nesterov: bool = False
    schedule: str = "step"  # "step" (x gamma at each milestone epoch) or "cosine" (per step, to 0)
    milestones: list[int] = field(default_factory=lambda: [25, 40])  # paper
    gamma: float = 0.1
    warmup_epochs: float = 0.0  # linear warm-up from 0, in epochs (fractions allowed)
    gate_lr_mult: float = 1.0  # HF gates train at lr x this; 0.1 from scratch (FINDINGS.md)
    clip_grad_norm: float = 0.0  # 0 = off


@dataclass
class TrainSection:
    """The loop: budget, devices, precision, checkpoints and logs."""

    epochs: int = 60  # paper
    batch_size: int = 32  # global batch (split evenly across processes under torchrun)
    seed: int = 0
    out_dir: str = "runs/hfnet"
    eval_every: int = 1  # validate every N epochs (and after the last)
    amp: bool = True  # mixed precision (autocast + GradScaler) on CUDA; ignored on CPU
    channels_last: str = "auto"  # "auto" = on for CPU (about 1.5x faster here), "on", "off"
    num_threads: int = 0  # torch intra-op threads; 0 = torch's default
    bn: str = "train"  # "train", "frozen" (eval-mode BN: running statistics) or "sync" (SyncBatchNorm, CUDA)
    save_dtype: str = "float32"  # dtype of best/last .safetensors ("float16" halves them)
    progress: bool = True  # tqdm bars (only shown on a terminal)
    max_steps_per_epoch: int = 0  # 0 = whole epoch; > 0 truncates epochs (smoke tests)


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        cfg = cls()
        for section, values in (d or {}).items():
            if section not in _SECTIONS:
                raise ConfigError(f"unknown config section [{section}]; sections: {sorted(_SECTIONS)}")
            if not isinstance(values, dict):
                raise ConfigError(f"[{section}] must be a table of key = value")
            for key, value in values.items():
                _set_field(cfg, section, key, value)
        return cfg

    def replace(self, overrides: Sequence[str]) -> "TrainConfig":
        """A copy with ``section.key=value`` overrides applied (values parsed as TOML literals)."""
        cfg = TrainConfig.from_dict(self.to_dict())
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            path, raw = item.split("=", 1)
            parts = path.strip().split(".")
            if len(parts) != 2:
                raise ConfigError(f"override {item!r}: the key must be section.key (e.g. optim.lr)")
            _set_field(cfg, parts[0], parts[1], parse_value(raw.strip()))
        return cfg


_SECTIONS = {f.name: f for f in dataclasses.fields(TrainConfig)}




def parse_value(raw: str) -> Any:
    """A TOML literal (``0.01``, ``true``, ``[25, 40]``, ``"x"``), else the raw text as a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_field(cfg: TrainConfig, section: str, key: str, value: Any) -> None:
    if section not in _SECTIONS:
        raise ConfigError(f"unknown config section {section!r}; sections: {sorted(_SECTIONS)}")
    sec = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(sec)}
    if key not in fields:
        raise ConfigError(f"unknown key {section}.{key}; keys of [{section}]: {sorted(fields)}")
    setattr(sec, key, _coerce(f"{section}.{key}", getattr(sec, key), fields[key], value))


def _coerce(name: str, current: Any, f: dataclasses.Field, value: Any) -> Any:
    """Check ``value`` against the field's type (ints are accepted for floats; '' / none for optionals)."""
    typ = str(f.type)
    optional = "None" in typ
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"{name} cannot be empty")
    base = typ.replace(" | None", "").strip()
    if base == "bool":
        if isinstance(value, bool):
            return value
    elif base == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif base == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif base.startswith("list[dict"):
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, dict) for v in value):
            return [dict(v) for v in value]
    elif base.startswith("list"):
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [int(v) for v in value]
    else:  # pragma: no cover - every field type is listed above
        return value
    raise ConfigError(f"{name} must be {base}, got {value!r}")


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a TOML / YAML config file (``None`` = the defaults) and apply ``section.key=value`` overrides."""
    cfg = TrainConfig()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = tomllib.loads(text)
        except Exception as e:  # noqa: BLE001 - both parsers' errors are reported the same way
            raise ConfigError(f"{p}: cannot parse config ({e})") from e
        cfg = TrainConfig.from_dict(data)
    return cfg.replace(overrides)


def dump_toml(cfg: TrainConfig) -> str:
    """The config as TOML text (None values are left out: they mean "registry default")."""
    lines: list[str] = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is None:
                continue
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)
