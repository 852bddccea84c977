"""``hfnet train``: train a model from a config file + overrides; resumable, single- or multi-process.

One run writes into ``train.out_dir``::

    config.toml          the full config (also inside every checkpoint, under training.config)
    last.safetensors     the model after the latest finished epoch (hfnet checkpoint format)
    best.safetensors     the model with the best validation top-1 so far
    last_state.pt        everything ``--resume`` needs: model, optimizer, GradScaler, RNG states, epoch,
                         history - tensors and primitive types only, read with ``torch.load(weights_only=True)``
    metrics.jsonl/.csv   one row per epoch: loss, top-1/top-5 (train and val), lr, time, skipped clips
    train.log            the console output

Every file is written atomically (``hfnet_core.atomic``): a crash or SIGKILL at any moment leaves the
previous or the new version, never a torn file. ``--resume`` restarts from the last *finished* epoch
(``last_state.pt`` alone, so the model and the optimizer can never come from different epochs); each
epoch reseeds every RNG from ``(seed, epoch, rank)``, so a resumed run repeats the same sample order and
augmentations as an uninterrupted one.

Multi-GPU / multi-node: launch with ``torchrun --nproc_per_node N -m hfnet_core.cli train ...``.
``train.batch_size`` is the global batch; each process takes ``batch_size / world_size`` clips per step
from a ``DistributedSampler`` whose shards interleave one permutation, so every step sees the same
clips as a single process would. Gradients are averaged by DistributedDataParallel (nccl on CUDA, gloo
on CPU). BatchNorm statistics are per process unless ``train.bn = "sync"`` (SyncBatchNorm, CUDA) or
``"frozen"`` (running statistics; what TSN's fine-tuning from ImageNet does for all but the first BN).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .atomic import as_write_error, torch_save_atomic, write_text_atomic
from .checkpoint import save_checkpoint
from .config import ConfigError, TrainConfig, dump_toml, load_config
from .data.loading import build_dataset, train_loader
from .device import pick_device, to_channels_last
from .errors import CheckpointError, HfnetError
from .model import ModelConfig, VideoClassifier, get_config
from .multitask import TaskSpec, is_multitask
from .paths import check_path_text, regular_file_problem

STATE_FILE = "last_state.pt"
LOG_FIELDS = ("epoch", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5",
              "time_s", "skipped")


# --------------------------------------------------------------------------------------------------
# Processes


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes in the environment (nothing to do for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend)
    return info


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 1_009 + int(rank)) % (2**31)


# --------------------------------------------------------------------------------------------------
# Model, optimizer, schedule


def build_model_from_config(cfg: TrainConfig, num_classes: int | None = None,
                            task_spec: TaskSpec | None = None) -> tuple[ModelConfig, VideoClassifier]:
    """The model to train. With a multi-task dataset (``task_spec``: verb / noun labels) the model must be
    multi-task; its verb / noun sizes come from the data and, where its config asks for an action head
    (``action_bias``), so do the action classes (the training pairs)."""
    overrides = cfg.model.overrides()
    if num_classes is not None and "num_classes" not in overrides:
        overrides["num_classes"] = num_classes
    mcfg = get_config(cfg.model.name, **overrides)
    if task_spec is not None or is_multitask(mcfg):
        if task_spec is None:
            raise ConfigError(f"{cfg.model.name} is a multi-task (verb / noun) model, but the {cfg.data.dataset} "
                              "data has one label per clip; use verb / noun data (epic-kitchens, or "
                              "data.synth_view = \"verb_noun\")")
        if not is_multitask(mcfg):
            raise ConfigError(f"the {cfg.data.dataset} data has verb / noun labels, but {cfg.model.name} is not a "
                              "multi-task model (e.g. mt_hf_tsn_bninception, epic_tsn_bninception)")
        with_actions = bool(mcfg.consensus_args.get("action_bias", True))
        spec = dataclasses.replace(task_spec, actions=task_spec.actions if with_actions else (),
                                   action_bias=with_actions)
        mcfg = mcfg.replace(num_classes=spec.num_outputs, consensus_args=spec.consensus_args())
    return mcfg, VideoClassifier(mcfg)


def resolve_model_config(cfg: TrainConfig) -> ModelConfig:
    """The model config before the class count is known (for frame count / input size)."""
    return get_config(cfg.model.name, **cfg.model.overrides())


def param_groups(model: VideoClassifier, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Four groups: {backbone/head, HF gates} x {weights (decayed), biases + BN (not decayed)}."""
    gate_ids = {id(p) for p in model.gate_parameters()}
    groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "gate_decay": [], "gate_no_decay": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = ("gate_" if id(p) in gate_ids else "") + ("decay" if p.dim() > 1 else "no_decay")
        groups[key].append(p)
    o = cfg.optim
    out = []
    for name, params in groups.items():
        if not params:
            continue
        out.append({
            "params": params,
            "name": name,
            "lr_mult": o.gate_lr_mult if name.startswith("gate") else 1.0,
            "weight_decay": 0.0 if "no_decay" in name else o.weight_decay,
        })
    return out


def lr_factor(cfg: TrainConfig, epoch_float: float) -> float:
    """Multiplier of ``optim.lr`` at a (fractional) epoch: warm-up, then step or cosine."""
    o, epochs = cfg.optim, cfg.train.epochs
    warm = 1.0
    if o.warmup_epochs > 0 and epoch_float < o.warmup_epochs:
        warm = max(epoch_float, 1e-3) / o.warmup_epochs
    if o.schedule == "step":
        passed = sum(1 for m in o.milestones if int(epoch_float) >= m)
        return warm * (o.gamma ** passed)
    if o.schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(epoch_float / max(epochs, 1), 1.0)))
    raise ConfigError(f"optim.schedule must be 'step' or 'cosine', got {o.schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_mult", 1.0)


def apply_bn_mode(model: nn.Module, mode: str) -> None:
    """After ``model.train()``: ``frozen`` puts every BatchNorm in eval mode (running statistics)."""
    if mode == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


# --------------------------------------------------------------------------------------------------
# State (resume)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": [int(v) for v in py_state[1]],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    np.random.set_state(("MT19937", s["numpy_keys"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resume state atomically; a full disk raises ``WriteError`` and keeps the previous state."""
    torch_save_atomic(path, state)


#: key -> what a resume state must hold there (``_save_epoch`` writes exactly these).
_STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "epoch": (int,), "global_step": (int,), "model": (dict,), "optimizer": (dict,), "scaler": (dict,),
    "rng": (dict,), "best_top1": (int, float), "best_epoch": (int,), "history": (list,), "config": (dict,),
    "class_names": (list,),
}


def _state_hint(path: Path) -> str:
    return (f"Nothing in {path.parent} was changed. Restore {path.name} from a backup to resume, or move it "
            "away to start the run over (that run overwrites last.safetensors and best.safetensors: copy "
            "them first to keep them).")


def load_state(path: Path) -> dict[str, Any]:
    """Read ``last_state.pt`` without unpickling code (tensors and primitive types only), bounded like any
    checkpoint (``importers.safe_load.read_pickled``), and check it holds what ``--resume`` needs.

    A truncated, corrupt or foreign file raises a ``CheckpointError`` saying what to do; nothing is changed.
    """
    from .importers.safe_load import read_pickled

    try:
        state = read_pickled(path)
    except HfnetError as e:
        raise CheckpointError(path, f"is not a readable training state: {e.problem}", _state_hint(path)) from None
    problems = []
    if not isinstance(state, dict) or state.get("format") != "hfnet-train-state":
        problems.append("it is not an hfnet training state (no format 'hfnet-train-state')")
    else:
        for key, types in _STATE_FIELDS.items():
            v = state.get(key)
            if not isinstance(v, types) or isinstance(v, bool):
                problems.append(f"{key} is {'missing' if v is None else type(v).__name__}")
        cfg = state.get("config")
        if isinstance(cfg, dict) and not all(isinstance(cfg.get(sec, {}), dict) for sec in ("model", "data", "optim")):
            problems.append("its config sections are not tables")
    if problems:
        raise CheckpointError(path, "is not a usable training state: " + "; ".join(problems) + ".", _state_hint(path))
    return state


def _restore(state: dict[str, Any], path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler) -> None:
    """Put model, optimizer, scaler and RNG back as the state file has them, or one ``CheckpointError``."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise CheckpointError(path, f"does not fit this run: {' '.join(str(e).split())[:300]}.",
                              _state_hint(path)) from None


def state_is_resume(resume: bool, out_dir: Path) -> bool:
    """Will this call continue a run (so a ``pretrained`` file is not needed any more)?"""
    return resume and os.path.lexists(out_dir / STATE_FILE)  # anything there is read (or refused), never replaced


def _config_differences(a: dict[str, Any], b: dict[str, Any], sections: Sequence[str]) -> list[str]:
    """``section.key`` entries that differ between a saved config ``a`` and this one ``b``. A key the saved
    config lacks (it predates the field) counts as the field's default, so older runs still resume."""
    defaults = TrainConfig().to_dict()
    diffs = []
    for s in sections:
        for k in sorted(set(a.get(s, {})) | set(b.get(s, {}))):
            saved = a.get(s, {}).get(k, defaults.get(s, {}).get(k))
            if saved != b.get(s, {}).get(k):
                diffs.append(f"{s}.{k}: saved {saved!r}, now {b.get(s, {}).get(k)!r}")
    return diffs


# --------------------------------------------------------------------------------------------------
# Logging


class RunLog:
    """Console + ``train.log`` lines (main process only) and the per-epoch metrics tables."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        try:
            self._file = open(out_dir / "train.log", "a", encoding="utf-8") if enabled else None
        except OSError as e:
            raise as_write_error(out_dir / "train.log", e) from None

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        assert self._file is not None
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as e:
            raise as_write_error(self.out_dir / "train.log", e) from None

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl and metrics.csv from the full history (atomic, so never half a row)."""
        if not self.enabled:
            return
        write_text_atomic(self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(LOG_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in history:
            w.writerow({k: r.get(k, "") for k in LOG_FIELDS})
        write_text_atomic(self.out_dir / "metrics.csv", buf.getvalue())

    def close(self) -> None:
        if self._file:
            self._file.close()


# --------------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    out_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_top1: float = float("nan")
    best_epoch: int = -1
    class_names: list[str] = field(default_factory=list)


def _progress(iterable: Any, enabled: bool, **kw: Any) -> Any:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)


def train(cfg: TrainConfig, resume: bool = False, stop_after_epochs: int | None = None) -> TrainResult:
    """Train as ``cfg`` says; ``resume=True`` continues from ``<out_dir>/last_state.pt`` when it exists.

    ``stop_after_epochs`` ends the call after that many epochs of this invocation (the run stays
    resumable, and ``resume=True`` continues it), for callers that train in slices.
    """
    dist_info = init_distributed()
    device = pick_device(dist_info.local_rank)
    cuda = device.type == "cuda"
    t = cfg.train
    if t.num_threads > 0:
        torch.set_num_threads(t.num_threads)
    if t.batch_size % dist_info.world_size:
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by {dist_info.world_size} processes")
    out_dir = Path(check_path_text(t.out_dir))
    if cfg.model.pretrained and not state_is_resume(resume, out_dir):
        problem = regular_file_problem(cfg.model.pretrained)
        if problem:
            raise ConfigError(f"model.pretrained: {cfg.model.pretrained}: {problem}")
    if dist_info.is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for stale in out_dir.glob(".*.tmp"):  # left by a write that a kill interrupted (hfnet_core.atomic)
                stale.unlink(missing_ok=True)
        except OSError as e:
            raise as_write_error(out_dir, e) from None
    if dist_info.enabled:
        dist.barrier()
    log = RunLog(out_dir, dist_info.is_main)
    show_bars = t.progress and dist_info.is_main and sys.stderr.isatty()

    # Resume state first: the saved config must agree with this one on what is being trained.
    state: dict[str, Any] | None = None
    state_path = out_dir / STATE_FILE
    if state_is_resume(resume, out_dir):
        state = load_state(state_path)
        diffs = _config_differences(state["config"], cfg.to_dict(), ("model", "data", "optim"))
        if diffs:
            raise ConfigError(f"{state_path}: cannot resume with a different config: " + "; ".join(diffs))
    elif resume:
        log(f"--resume: no {state_path} yet, starting from scratch")

    seed_everything(epoch_seed(t.seed, -1, 0))  # identical initial weights on every process
    pre = resolve_model_config(cfg)
    val_ds = build_dataset(cfg.data, cfg.data.val_split, pre, train=False)
    data_spec = getattr(val_ds, "task_spec", None)
    mcfg, model = build_model_from_config(cfg, len(getattr(val_ds, "class_names")), data_spec)
    spec = TaskSpec.from_model(mcfg, data_spec.class_names() if data_spec is not None else None)
    class_names = spec.class_names() if spec is not None else list(getattr(val_ds, "class_names"))
    if mcfg.num_classes != len(class_names):
        raise ConfigError(f"model.num_classes={mcfg.num_classes} but the dataset has {len(class_names)} classes")
    if cfg.model.pretrained and state is None:
        try:
            from .importers import load_pretrained_backbone
        except ImportError as e:
            raise ConfigError(f"--pretrained needs hfnet_core.importers.load_pretrained_backbone ({e})") from e
        load_pretrained_backbone(model, cfg.model.pretrained)
        log(f"backbone initialised from {cfg.model.pretrained}")
    use_cl = t.channels_last == "on" or (t.channels_last == "auto" and not cuda)
    model.to(device)
    if use_cl:
        to_channels_last(model)
    if t.bn == "sync":
        if not (cuda and dist_info.enabled):
            log("train.bn = 'sync' needs several CUDA processes; using per-process BatchNorm")
        else:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                                nesterov=cfg.optim.nesterov)
    amp = bool(t.amp and cuda)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    history: list[dict[str, Any]] = []
    start_epoch, global_step, best_top1, best_epoch = 0, 0, -1.0, -1
    if state is not None:
        _restore(state, state_path, model, optimizer, scaler)
        if use_cl:
            to_channels_last(model)
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        best_top1, best_epoch = float(state["best_top1"]), int(state["best_epoch"])
        history = list(state["history"])
        log(f"resumed {out_dir} after epoch {start_epoch} (step {global_step})")
        log.write_history(history)
    if dist_info.is_main:
        write_text_atomic(out_dir / "config.toml", dump_toml(cfg))

    net: nn.Module = model
    if dist_info.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)

    per_rank_batch = t.batch_size // dist_info.world_size
    log(f"training {mcfg.name or cfg.model.name} ({sum(p.numel() for p in model.parameters()):,} params, "
        f"{len(class_names)} classes) on {device} x{dist_info.world_size}, epochs {start_epoch}->{t.epochs}, "
        f"batch {t.batch_size}, amp {amp}, channels_last {use_cl}, bn {t.bn}")
    epochs_run = 0
    for epoch in range(start_epoch, t.epochs):
        if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
            break
        t0 = time.time()
        seed_everything(epoch_seed(t.seed, epoch, dist_info.rank))
        train_ds = build_dataset(cfg.data, cfg.data.train_split, mcfg, train=True, epoch=epoch)
        loader = train_loader(train_ds, per_rank_batch, t.seed, epoch, dist_info.rank, dist_info.world_size,
                              cfg.data.num_workers, pin_memory=cuda,
                              generator_seed=epoch_seed(t.seed, epoch, dist_info.rank))
        steps = len(loader) if not t.max_steps_per_epoch else min(len(loader), t.max_steps_per_epoch)
        model.train()
        apply_bn_mode(model, t.bn)
        sums = torch.zeros(4, dtype=torch.float64)  # loss * n, top-1 hits, top-5 hits, n
        skipped: list[tuple[str, str]] = []
        bar = _progress(loader, show_bars, total=steps, desc=f"epoch {epoch + 1}/{t.epochs}", leave=False)
        for step, batch in enumerate(bar):
            if step >= steps:
                break
            skipped += batch["skipped"]
            lr = cfg.optim.lr * lr_factor(cfg, epoch + step / max(steps, 1))
            set_lr(optimizer, lr)
            if batch["frames"] is None:  # every clip of this batch was unreadable
                if dist_info.enabled:  # the other processes wait for this one's gradients
                    batch = _dummy_batch(mcfg, device)
                else:
                    continue
            x = batch["frames"].to(device, non_blocking=True)
            y = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                logits = net(x)
                loss = spec.loss(logits, y) if spec is not None else F.cross_entropy(logits.float(), y)
            if batch.get("dummy"):
                loss = loss * 0.0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            global_step += 1
            if not batch.get("dummy"):
                with torch.no_grad():
                    lg = logits.detach().float()
                    n = y.numel()
                    if spec is not None:  # top-1 / top-5 of the action (p(verb) * p(noun))
                        top = spec.action_topk(lg, 5)
                    else:
                        top = lg.topk(min(5, lg.shape[1]), dim=1).indices
                    sums += torch.tensor([loss.item() * n, (top[:, 0] == y).sum().item(),
                                          (top == y[:, None]).any(1).sum().item(), n], dtype=torch.float64)
            if show_bars:
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}")
            elif t.progress and (step + 1) % max(steps // 4, 1) == 0 and step + 1 < steps:
                log(f"epoch {epoch + 1} step {step + 1}/{steps}  loss {sums[0].item() / max(sums[3].item(), 1):.4f}"
                    f"  {time.time() - t0:.0f}s")  # a heartbeat in log files (no progress bar there)
        if dist_info.enabled:
            dist.all_reduce(sums)
            skipped = _gather_skipped(skipped, dist_info)
        n = max(sums[3].item(), 1)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_mult", 1.0),
            "train_loss": sums[0].item() / n,
            "train_top1": sums[1].item() / n,
            "train_top5": sums[2].item() / n,
            "train_clips": int(sums[3].item()),
            "skipped": len(skipped),
            "skipped_clips": [f"{a}: {b}" for a, b in skipped[:100]],
        }
        is_last = epoch + 1 == t.epochs
        if dist_info.is_main and (is_last or (epoch + 1) % max(t.eval_every, 1) == 0):
            row.update(validate(model, val_ds, device, per_rank_batch, amp, cfg.data.num_workers, show_bars))
        row["time_s"] = round(time.time() - t0, 2)
        history.append(row)
        if dist_info.is_main:
            improved = row.get("val_top1", -1.0) > best_top1
            if improved:
                best_top1, best_epoch = row["val_top1"], epoch + 1
            _save_epoch(out_dir, cfg, model, optimizer, scaler, class_names, history, epoch + 1, global_step,
                        best_top1, best_epoch, improved)
            log.write_history(history)
            log(_epoch_line(row, t.epochs, skipped))
        if dist_info.enabled:
            dist.barrier()
        epochs_run += 1
    log.close()
    return TrainResult(out_dir, history, best_top1, best_epoch, class_names)


def validate(model: VideoClassifier, dataset: Dataset, device: torch.device, batch_size: int, amp: bool,
             num_workers: int, progress: bool) -> dict[str, Any]:
    """Loss, top-1 and top-5 on ``dataset`` (every clip, centre crop, eval mode), for the epoch log."""
    from .evaluate import run_inference

    res = run_inference(model, dataset, device, batch_size=batch_size, amp=amp, num_workers=num_workers,
                        progress=progress)
    logits, labels = torch.from_numpy(res.logits), torch.from_numpy(res.labels)
    keep = labels >= 0
    logits, labels = logits[keep], labels[keep]
    if not len(labels):
        return {"val_loss": float("nan"), "val_top1": float("nan"), "val_top5": float("nan"),
                "val_skipped": len(res.skipped)}
    spec = TaskSpec.from_model(model.config)
    if spec is not None:  # multi-task: the loss of all tasks, action top-1 / top-5 (verb x noun)
        loss_n, top1, top5 = spec.log_metrics(logits, labels)
        return {"val_loss": loss_n / len(labels), "val_top1": top1 / len(labels), "val_top5": top5 / len(labels),
                "val_skipped": len(res.skipped)}
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return {
        "val_loss": float(F.cross_entropy(logits, labels).item()),
        "val_top1": float((top5[:, 0] == labels).float().mean()),
        "val_top5": float((top5 == labels[:, None]).any(1).float().mean()),
        "val_skipped": len(res.skipped),
    }


def _epoch_line(row: dict[str, Any], epochs: int, skipped: list[tuple[str, str]]) -> str:
    msg = (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  "
           f"train top-1 {100 * row['train_top1']:.1f}%")
    if "val_top1" in row:
        msg += (f"  val loss {row['val_loss']:.4f}  val top-1 {100 * row['val_top1']:.1f}%  "
                f"top-5 {100 * row['val_top5']:.1f}%")
    msg += f"  {row['time_s']:.0f}s"
    if skipped:
        msg += f"  skipped {len(skipped)} clips: " + ", ".join(a for a, _ in skipped[:5]) + \
               (" ..." if len(skipped) > 5 else "")
    return msg


def _dummy_batch(mcfg: ModelConfig, device: torch.device) -> dict[str, Any]:
    s = mcfg.input_size
    return {"frames": torch.zeros(1, mcfg.num_segments, 3, s, s, device=device),
            "label": torch.zeros(1, dtype=torch.long, device=device), "dummy": True, "skipped": []}


def _gather_skipped(skipped: list[tuple[str, str]], dist_info: DistInfo) -> list[tuple[str, str]]:
    gathered: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(gathered, skipped)
    return [tuple(s) for part in gathered for s in part]  # type: ignore[misc]


def training_metadata(cfg: TrainConfig, history: list[dict[str, Any]], epoch: int) -> dict[str, Any]:
    """What a checkpoint records about how it was trained (``training`` in its header)."""
    last = {k: v for k, v in (history[-1] if history else {}).items() if k != "skipped_clips"}
    return {"config": cfg.to_dict(), "epoch": epoch, "epochs": cfg.train.epochs, "metrics": last,
            "hfnet_train": "hfnet_core.train"}


def _save_epoch(out_dir: Path, cfg: TrainConfig, model: VideoClassifier, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, class_names: list[str], history: list[dict[str, Any]], epoch: int,
                global_step: int, best_top1: float, best_epoch: int, improved: bool) -> None:
    """State first (what --resume reads), then the user-facing checkpoints; each write is atomic."""
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_state(out_dir / STATE_FILE, {
        "format": "hfnet-train-state",
        "epoch": epoch,
        "global_step": global_step,
        "model": sd,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": _rng_state(),
        "best_top1": best_top1,
        "best_epoch": best_epoch,
        "history": history,
        "config": cfg.to_dict(),
        "class_names": class_names,
    })
    dtype = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[cfg.train.save_dtype]
    meta = training_metadata(cfg, history, epoch)
    save_checkpoint(out_dir / "last.safetensors", model, class_names, training=meta, dtype=dtype)
    if improved:
        save_checkpoint(out_dir / "best.safetensors", model, class_names, training=meta, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfnet train",
        description="Train a model. Defaults are the paper's recipe (Sec. IV-B); a TOML/YAML config file and "
                    "--set section.key=value overrides change them. Multi-GPU: torchrun --nproc_per_node N "
                    "-m hfnet_core.cli train ...",
    )
    p.add_argument("config", nargs="?", help="config file (.toml, .yaml); see configs/")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set optim.lr=0.01 (repeatable)")
    p.add_argument("--model", help="shortcut for --set model.name=...")
    p.add_argument("--dataset", help="shortcut for --set data.dataset=... (synth, something-v1, video-folder, csv, epic-kitchens)")
    p.add_argument("--root", help="shortcut for --set data.root=...")
    p.add_argument("--out", help="shortcut for --set train.out_dir=...")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=...")
    p.add_argument("--batch-size", type=int, help="shortcut for --set train.batch_size=... (global batch)")
    p.add_argument("--lr", type=float, help="shortcut for --set optim.lr=...")
    p.add_argument("--pretrained", metavar="PATH", help="ImageNet BNInception weights for the backbone")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/last_state.pt (optimizer, schedule, RNG, epoch); "
                        "starts from scratch when there is none yet")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.overrides)
    for flag, key in (("model", "model.name"), ("dataset", "data.dataset"), ("root", "data.root"),
                      ("out", "train.out_dir"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
                      ("lr", "optim.lr"), ("pretrained", "model.pretrained")):
        v = getattr(args, flag)
        if v is not None:
            overrides.append(f"{key}={json.dumps(v)}")
    return load_config(args.config, overrides)


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        print(f"hfnet train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_toml(cfg))
        return 0
    try:
        result = train(cfg, resume=args.resume)
    except HfnetError as e:
        print(f"hfnet train: {e.one_line()}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result.best_epoch > 0:
        print(f"best val top-1 {100 * result.best_val_top1:.2f} % at epoch {result.best_epoch}; "
              f"checkpoints in {result.out_dir}")
    return 0
