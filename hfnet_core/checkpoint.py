"""Checkpoints: the one entry point for saving and loading models, whatever wrote the file.

    save_checkpoint(path, model, class_names)   hfnet's own .safetensors file (native_checkpoint.py)
    load_checkpoint(path, device, **options)    any checkpoint: an hfnet file, or a foreign one
                                                (TSN/TSM/GSM/TRN, mmaction2, torchvision, Caffe BN-Inception,
                                                ECO, EPIC-Kitchens) imported by ``hfnet_core.importers``

This module sits above both: the native format knows nothing of foreign ones, and the importers use the
native format's strict loading, so nothing here imports back into either.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .errors import CheckpointError
from .importers import import_checkpoint
from .native_checkpoint import (FORMAT, FORMAT_VERSION, LoadedCheckpoint, architecture_mismatch, existing_file,
                                file_sha256, is_native_checkpoint, load_native_checkpoint, load_state_dict_strict,
                                read_metadata, save_checkpoint)
from .safetensors_file import looks_like_safetensors

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "LoadedCheckpoint", "architecture_mismatch",
           "file_sha256", "is_native_checkpoint", "load_checkpoint", "load_native_checkpoint",
           "load_state_dict_strict", "read_metadata", "save_checkpoint"]


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                    **import_options: Any) -> LoadedCheckpoint:
    """Rebuild a model from a checkpoint file alone, in eval mode on ``device``.

    Files starting with a safetensors header are read as native hfnet files (a corrupt or foreign one
    raises ``CheckpointError``); anything else is handed to ``hfnet_core.importers``, which detects the
    format from the keys and needs ``import_options`` (``num_segments``, ``shift_div``, ...) only where the
    file does not record them.
    """
    p = existing_file(path)
    if looks_like_safetensors(p):
        return load_native_checkpoint(p, device)
    loaded = import_checkpoint(p, **import_options)
    loaded.model.to(device).eval()
    return loaded
