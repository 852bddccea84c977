"""From a data config to batches: the one ``build_dataset``, the skip guard, the one batch layout, loaders.

Training, evaluation and feature extraction all read clips through this module, so there is one place
that decides which dataset a config means, one batch layout and one skip accounting:

* ``build_dataset(data, split, model_config, train)`` - the dataset of a split with the model's frame
  count, crop size and pixel convention, and TSN's training or test transform.
* ``GuardedDataset`` - an unreadable clip becomes a named marker (``{"skipped": file, "reason": why}``)
  instead of an exception, so a DataLoader worker never dies on one bad file and the name that reaches
  the log is the file that failed *in this call* (never an earlier entry of the dataset's skip list).
* ``collate_batch`` - the batch layout every consumer reads::

      {"frames": float (N, T, 3, H, W) or None, "label": int64 (N,) or None,
       "clip_id": [N str], "path": [N str], "skipped": [(file, reason), ...]}

* ``train_loader`` / ``eval_loader`` - DataLoaders over a (process's shard of a) dataset.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError, DatasetError, HfnetError, describe

__all__ = ["GuardedDataset", "collate_batch", "build_dataset", "train_loader", "eval_loader",
           "UNNAMED_CLIP"]

#: Name used for a clip that a bare dataset (not wrapped in ``GuardedDataset``) returned as ``None``.
UNNAMED_CLIP = "(unnamed clip)"


class GuardedDataset(Dataset):
    """Wraps a dataset so an unreadable clip becomes a named marker instead of an exception or a bare None."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # class_names, labels, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def clip_name(self, index: int) -> str:
        """The file (or clip id) of item ``index``, for skip reports."""
        samples = getattr(self.dataset, "samples", None)
        if isinstance(samples, (list, tuple)) and 0 <= index < len(samples):
            first = samples[index][0] if isinstance(samples[index], (list, tuple)) else samples[index]
            return str(first)
        for attr in ("clip_id", "path_of", "clip_path"):
            fn = getattr(self.dataset, attr, None)
            if callable(fn):
                try:
                    return str(fn(index))
                except Exception:  # noqa: BLE001 - naming must never fail
                    pass
        return f"item #{index}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped = getattr(self.dataset, "skipped", None)
        before = len(skipped) if isinstance(skipped, list) else 0
        try:
            item = self.dataset[index]
        except Exception as e:  # noqa: BLE001 - any failure to read one clip skips that clip, named
            path = getattr(e, "path", None) if isinstance(e, HfnetError) else None
            return {"skipped": str(path or self.clip_name(index)), "reason": describe(e)}
        if item is not None:
            return item
        # The dataset declined the clip; it records (file, reason) of what it skipped. Use the entry this
        # very call appended - an earlier one would name the wrong file.
        skipped = getattr(self.dataset, "skipped", None)
        if isinstance(skipped, list) and len(skipped) > before:
            last = skipped[-1]
            if isinstance(last, (tuple, list)) and len(last) == 2:
                return {"skipped": str(last[0]), "reason": str(last[1])}
        return {"skipped": self.clip_name(index), "reason": "the dataset returned no clip"}


def collate_batch(items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack the good clips; list the skipped ones (``skipped``: [(name, reason), ...]).

    Accepts the markers of ``GuardedDataset`` and bare ``None`` items (a dataset used without the guard:
    the clip is counted under ``UNNAMED_CLIP``; its dataset's ``skipped`` list holds the name).
    """
    good = [it for it in items if it is not None and "skipped" not in it]
    skipped = [(UNNAMED_CLIP, "the dataset returned no clip") if it is None else
               (str(it["skipped"]), str(it.get("reason", ""))) for it in items
               if it is None or "skipped" in it]
    if not good:
        return {"frames": None, "label": None, "clip_id": [], "path": [], "skipped": skipped}
    return {
        "frames": torch.stack([torch.as_tensor(it["frames"]) for it in good]),
        "label": torch.tensor([int(it["label"]) for it in good], dtype=torch.long),
        "clip_id": [str(it.get("clip_id", "")) for it in good],
        "path": [str(it.get("path", it.get("clip_id", ""))) for it in good],
        "skipped": skipped,
    }


def build_dataset(data: Any, split: str, model_config: Any, train: bool, epoch: int = 0) -> Dataset:
    """The dataset of ``split`` for a model, with TSN's training (``train=True``) or test transform.

    ``data`` is a ``DataSection`` (``hfnet_core.config``); ``split`` a split name ("train", "val",
    "test"), mapped to list files / folders by ``hfnet_core.data.formats.open_dataset``. SynthSomething
    is generated in memory (nothing on disk). Frame count, crop size and pixel convention come from
    ``model_config``.
    """
    from ..model import input_convention_of

    size = int(model_config.input_size)
    frames = int(model_config.num_segments)
    convention = input_convention_of(model_config)
    if data.dataset == "synth":
        from .synthetic import SYNTH_VIEWS, SynthSomethingDataset

        per_class = {"train": data.synth_train_per_class, "val": data.synth_val_per_class,
                     "test": data.synth_test_per_class}
        if split not in per_class:
            raise ConfigError(f"SynthSomething has splits train/val/test, not {split!r}")
        seed = data.synth_seed + (epoch if (train and data.synth_fresh_each_epoch) else 0)
        view = getattr(data, "synth_view", "action")
        if view not in SYNTH_VIEWS:
            raise ConfigError(f"data.synth_view must be one of {SYNTH_VIEWS}, got {view!r}")
        ds: Any = SynthSomethingDataset(split, per_class[split], frames, data.synth_size or size, seed, None,
                                        convention=convention, view=view)
    else:
        from .formats import open_dataset
        from .epic import EPIC_NAMES

        lst = (data.train_list if train else data.val_list) or None
        extra = {"train_annotations": data.train_list or None} if data.dataset in EPIC_NAMES else {}
        try:
            ds = open_dataset(data.dataset, root=data.root, split=split, list_file=lst, num_frames=frames,
                              train=train, transform=None, convention=convention,
                              split_index=int(getattr(data, "split_index", 1) or 1), **extra)
        except HfnetError:
            raise
        except (FileNotFoundError, ValueError) as e:
            raise DatasetError(f"cannot open the {data.dataset} dataset, split {split!r}: {e}",
                               path=data.root or None) from e
    spec = getattr(ds, "task_spec", None)  # multi-task data: flips act on the verb (its names)
    ds.transform = _transform(data, size, train, list(spec.verb_names) if spec is not None else list(ds.class_names))
    return ds


def _transform(data: Any, size: int, train: bool, class_names: list[str]) -> Callable | None:
    """TSN transforms: multi-scale crop + label-aware flip (train), resize + centre crop (test)."""
    from . import transforms

    synth = data.dataset == "synth"
    if synth and data.synth_size in (0, size) and not (train and data.augment):
        return None  # synthetic clips are rendered at the input size: nothing to crop
    if train and data.augment:
        if synth:
            from .synthetic import SYNTH_FLIP_LABEL_MAP

            flip_map: dict[int, int | None] = dict(SYNTH_FLIP_LABEL_MAP)
        else:
            flip_map = transforms.flip_label_map_from_names(class_names)
        return transforms.train_transform(size, flip_map)
    return transforms.eval_transform(size)


def train_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, rank: int, world_size: int,
                 num_workers: int, pin_memory: bool = False, shuffle: bool = True,
                 generator_seed: int | None = None) -> DataLoader:
    """A loader over this process's shard. Shards interleave one seeded permutation of the whole set."""
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    g = torch.Generator()
    g.manual_seed(seed if generator_seed is None else generator_seed)
    return DataLoader(
        GuardedDataset(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        collate_fn=collate_batch, pin_memory=pin_memory, generator=g,
        worker_init_fn=_seed_worker if num_workers else None, persistent_workers=False,
    )


def eval_loader(dataset: Dataset | DataLoader, batch_size: int = 16, num_workers: int = 0,
                indices: Sequence[int] | None = None) -> DataLoader:
    """Every clip of ``dataset`` (or the given ``indices``) in order, guarded; a DataLoader passes through."""
    if isinstance(dataset, DataLoader):
        return dataset
    guarded = GuardedDataset(dataset)
    source: Dataset = guarded if indices is None else torch.utils.data.Subset(guarded, list(indices))
    return DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_batch)


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % (2**31)
    np.random.seed(s)
    random.seed(s)
