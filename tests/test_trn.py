"""TRN: the head's arithmetic is TRN-pytorch's (sum of sampled relations per scale, expectation in eval),
tuples come from their lexicographic rank, and TRN-pytorch / mmaction2 relation weights import exactly."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hfnet_core.heads import TRNHead, combination_by_rank
from hfnet_core.importers import import_checkpoint
from hfnet_core.model import build_model


@pytest.mark.parametrize("n,k", [(4, 2), (6, 3), (8, 4), (8, 7), (5, 5), (7, 1)])
def test_combination_by_rank_is_itertools_order(n, k):
    assert [combination_by_rank(n, k, r) for r in range(math.comb(n, k))] == list(itertools.combinations(range(n), k))


def _head(t: int, seed: int = 0) -> TRNHead:
    torch.manual_seed(seed)
    return TRNHead(12, 5, t, dropout=0.0, img_feature_dim=6, bottleneck=7).double()


def test_eval_is_the_expectation_of_trn_pytorchs_random_draw():
    """TRN-pytorch: largest scale = its single tuple; every other scale = the sum over 3 random tuples.
    Its expectation, by linearity, is 3 x the mean over all of a scale's tuples - what eval computes."""
    t = 5
    head = _head(t).eval()
    x = torch.randn(2, t, 12, dtype=torch.float64)
    with torch.no_grad():
        out = head(x)
        z = head.new_fc(x)
        ref = 0
        for i, k in enumerate(range(t, 1, -1)):
            rels = list(itertools.combinations(range(t), k))
            per = torch.stack([head.fc_fusion_scales[i](z[:, list(r)].reshape(2, -1)) for r in rels])
            ref = ref + (per[0] if i == 0 else min(3, len(rels)) * per.mean(0))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(head(x), out)  # deterministic


def test_training_draws_sum_three_tuples_and_average_to_eval():
    t = 4
    head = _head(t, seed=1)
    x = torch.randn(1, t, 12, dtype=torch.float64)
    with torch.no_grad():
        expected = head.eval()(x)
        head.train()
        draws = torch.stack([head(x) for _ in range(3000)])
    assert draws.std(0).max() > 1e-3  # random in training
    torch.testing.assert_close(draws.mean(0), expected, rtol=0.05, atol=0.02)


def test_many_frames_build_cheaply_with_a_bounded_eval_set():
    head = TRNHead(8, 3, 16, img_feature_dim=4, bottleneck=4)
    assert head.counts[8] == math.comb(16, 8) == 12870
    assert all(len(r) <= 128 for r in head._eval_relations)
    assert head(torch.randn(2, 16, 8)).shape == (2, 3)


def _trn_model():
    torch.manual_seed(0)
    m = build_model("trn_bninception_demo", num_classes=5, num_segments=4).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def _to_trn_pytorch(model) -> dict:
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("base_model."):
            sd["module." + k] = v.clone()
        elif k.startswith("head.new_fc."):
            sd["module.new_fc." + k.rsplit(".", 1)[1]] = v.clone()
        elif k.startswith("head.fc_fusion_scales."):
            sd["module.consensus." + k[len("head."):]] = v.clone()
    return sd


def test_trn_pytorch_checkpoint_loads_and_runs_as_trn(tmp_path):
    model = _trn_model()
    sd = _to_trn_pytorch(model)
    assert "module.consensus.fc_fusion_scales.0.1.weight" in sd and "module.consensus.fc_fusion_scales.2.3.bias" in sd
    torch.save({"epoch": 3, "arch": "BNInception", "state_dict": sd, "best_prec1": 9.0}, tmp_path / "trn.pth.tar")
    loaded = import_checkpoint(tmp_path / "trn.pth.tar")
    assert loaded.config.consensus == "trn" and loaded.config.num_segments == 4  # 3 scales -> 4 frames
    assert loaded.config.consensus_args == {"img_feature_dim": 256, "bottleneck": 256}
    assert loaded.import_report["recovered"]["num_segments"]["source"].startswith("keys")
    x = torch.randn(2, 4, 3, 64, 64) * 50
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))


def test_mmaction2_trn_recogniser_loads(tmp_path):
    from test_importers import to_mmaction  # the ResNet key renaming of that test module

    torch.manual_seed(0)
    trn = build_model("tsn_resnet18_demo", num_classes=5, num_segments=3, consensus="trn").eval()

    sd = {}
    for k, v in trn.state_dict().items():
        if k.startswith("base_model."):
            sd["backbone." + to_mmaction(k[len("base_model."):])] = v.clone()
        elif k.startswith("head.new_fc."):
            sd["cls_head.fc_cls." + k.rsplit(".", 1)[1]] = v.clone()
        elif k.startswith("head.fc_fusion_scales."):
            sd["cls_head.consensus." + k[len("head."):]] = v.clone()
    torch.save({"state_dict": sd, "meta": {"config": "model = dict(cls_head=dict(type='TRNHead', num_segments=3))"}},
               tmp_path / "trn_mm.pth")
    loaded = import_checkpoint(tmp_path / "trn_mm.pth")
    assert loaded.config.consensus == "trn" and loaded.config.num_segments == 3
    x = torch.randn(1, 3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), trn(x))
