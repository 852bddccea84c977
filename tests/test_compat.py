"""Every checkpoint written before temporal operators existed still loads and computes what it computed:
the shipped demo pair (first checkpoint format, ``hf_*`` config fields) against the logits stored in its own
eval bundles, which the previous model code wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from hfnet_core.checkpoint import load_checkpoint, read_metadata
from hfnet_core.evaluate import dataset_for_checkpoint, run_inference
from hfnet_core.eval_bundle import EvalBundle

CKPT = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.mark.parametrize("stem", ["hf_tsn_demo", "tsn_demo"])
def test_shipped_pair_reproduces_its_bundle_logits(stem):
    path = CKPT / f"{stem}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        raw = json.loads(f.metadata()["hfnet"])["model_config"]
    assert "hf_placement" in raw and "temporal" not in raw  # written in the first format
    ck = load_checkpoint(path)
    expected = [{"op": "hf", "where": "all", "args": {"conservative": True, "impl": "matmul"}}] if stem == "hf_tsn_demo" \
        else []
    assert ck.config.temporal == expected
    bundle = EvalBundle.load(CKPT / f"{stem}.test.npz")
    md = bundle.metadata
    ds = dataset_for_checkpoint(ck.model, md["dataset"], md["split"], synth_per_class=md["synth_per_class"],
                                synth_seed=md["synth_seed"])
    rows = list(range(0, len(ds), 97))  # clips of every class
    res = run_inference(ck.model, torch.utils.data.Subset(ds, rows), batch_size=4)
    ref = bundle.logits[[bundle.clip_ids.index(c) for c in res.clip_ids]]
    assert len(res.clip_ids) == len(rows)
    np.testing.assert_allclose(res.logits, ref, atol=1e-4, rtol=1e-5)


def test_metadata_of_the_first_format_reads_as_operators():
    meta = read_metadata(CKPT / "hf_tsn_demo.safetensors")
    assert meta["format_version"] == 1 and meta["model_config"]["hf_placement"] == "all"
