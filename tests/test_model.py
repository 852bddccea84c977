"""VideoClassifier: registry, inspect(), what HF can and cannot change under TSN/TRN, thread safety."""

from __future__ import annotations

import threading

import pytest
import torch

from hfnet_core.model import (
    Inspection,
    ModelConfig,
    VideoClassifier,
    available_models,
    build_model,
    get_config,
    hf_key,
)
from hfnet_core.temporal import resolve

SMALL = dict(width_mult=0.25, num_classes=5)
SIZE = 64


def clips(n: int, t: int, size: int = SIZE, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, t, 3, size, size, generator=g) * 50).to(dtype)


def randomize(model: VideoClassifier, seed: int = 0, gate_std: float = 0.05, gate_bias: float = 0.3) -> VideoClassifier:
    """Random BN statistics and non-zero gates, so that nothing is trivially the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        for name, p in model.hf.named_parameters():
            if name.endswith("bias"):
                p.fill_(gate_bias)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * gate_std)
    return model.eval()


def same_weights(dst: VideoClassifier, src: VideoClassifier) -> VideoClassifier:
    dst.base_model.load_state_dict(src.base_model.state_dict(), strict=True)
    dst.head.load_state_dict(src.head.state_dict(), strict=True)
    return dst.eval()


@pytest.mark.parametrize("name", available_models())
def test_every_registered_model_builds_and_runs(name):
    torch.manual_seed(0)
    small = dict(SMALL)
    if get_config(name).consensus == "multitask":  # its output width is verbs + nouns (+ actions)
        small.pop("num_classes")
    cfg = get_config(name, **small, num_segments=3)
    assert cfg.name == name
    model = build_model(name, **small, num_segments=3).eval()
    assert model.config == cfg
    x = clips(2, 3)
    with torch.no_grad():
        logits = model(x)
        ins = model.inspect(x)
    assert isinstance(ins, Inspection)
    assert logits.shape == (2, cfg.num_classes) and torch.isfinite(logits).all()
    assert torch.equal(logits, ins.logits)
    d = model.feature_dim
    per_clip = model.base_model.output_frames(3)  # 3 per-frame vectors; 1 clip vector for ECO-Lite
    assert ins.frame_features.shape == (2, per_clip, d) and ins.pooled_features.shape == (2, d)
    assert torch.allclose(ins.pooled_features, ins.frame_features.mean(dim=1))
    assert list(ins.gates) == list(model.hf_blocks)
    strides = model.base_model.block_strides
    for block, g in ins.gates.items():
        side = -(-SIZE // strides[block])  # ceil: ceil-mode pools / padded convolutions round up
        assert g.shape[:2] == (2, 3) and abs(g.shape[2] - side) <= 1 and g.shape[2] == g.shape[3], block
        assert torch.equal(g[:, -1], torch.zeros_like(g[:, -1]))
    if "nonconservative" in name:
        assert not any(m.conservative for _, _, m in model.operators("hf"))
    desc = model.describe()
    assert desc["params_hf"] == sum(p.numel() for p in model.hf.parameters())
    assert desc["hf_blocks"] == list(model.hf_blocks)


def test_paper_placements():
    blocks = [f"inception_{b}" for b in ("3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    with torch.device("meta"):  # shapes only: full-width models in milliseconds
        assert build_model("tsn_bninception").hf_blocks == ()
        assert build_model("hf1_tsn_bninception").hf_blocks == ("inception_5b",)
        assert list(build_model("hf5_tsn_bninception").hf_blocks) == blocks[-5:]
        assert list(build_model("hf_tsn_bninception").hf_blocks) == blocks
        nc = build_model("hf_tsn_bninception_nonconservative")
    assert all(m.gate_out is not None for m in nc.hf.values())
    cfg = ModelConfig()  # the paper's defaults
    assert (cfg.num_segments, cfg.input_size, cfg.num_classes, cfg.consensus) == (16, 224, 174, "avg")


def test_parameter_names():
    model = build_model("hf_tsn_bninception_demo", num_classes=5)
    keys = set(model.state_dict())
    assert "base_model.conv1_7x7_s2.weight" in keys and "head.new_fc.weight" in keys
    assert f"hf.{hf_key('inception_3a')}.gate.weight" in keys
    assert tuple(model.state_dict()[f"hf.{hf_key('inception_3a')}.gate.weight"].shape) == (
        1, model.base_model.block_channels["inception_3a"], 2, 3, 3)


def test_tsn_last_hf_cannot_change_eval_logits():
    """FINDINGS: HF conserves sum_t F_t; GAP, the classifier and TSN's average are linear, so an HF module
    after the last block cannot change TSN's eval-mode logits, whatever its gates."""
    torch.manual_seed(1)
    hf1 = randomize(build_model("hf1_tsn_bninception_demo", **SMALL, num_segments=4).double(), seed=2)
    tsn = same_weights(build_model("tsn_bninception_demo", **SMALL, num_segments=4).double(), hf1)
    x = clips(2, 4, dtype=torch.float64)
    with torch.no_grad():
        a, b = hf1.inspect(x), tsn.inspect(x)
    g = a.gates["inception_5b"]
    assert g[:, :-1].abs().mean() > 0.1  # the gates really move features...
    assert (a.frame_features - b.frame_features).abs().max() > 1e-3  # ...per frame,
    assert (a.pooled_features - b.pooled_features).abs().max() <= 1e-10  # but not in sum
    assert (a.logits - b.logits).abs().max() <= 1e-10
    # float32, as the model runs: equal to rounding
    with torch.no_grad():
        a32 = hf1.float()(x.float())
        b32 = tsn.float()(x.float())
    assert (a32 - b32).abs().max() <= 1e-5 * max(1.0, b32.abs().max().item())


def test_trn_last_hf_changes_logits():
    torch.manual_seed(3)
    hf1 = randomize(build_model("hf_trn_bninception_demo", **SMALL, num_segments=4,
                                hf_placement="last1").double(), seed=4)
    trn = same_weights(build_model("hf_trn_bninception_demo", **SMALL, num_segments=4,
                                   hf_placement="none").double(), hf1)
    x = clips(2, 4, dtype=torch.float64)
    with torch.no_grad():
        a, b = hf1.inspect(x), trn.inspect(x)
    assert (a.pooled_features - b.pooled_features).abs().max() <= 1e-10
    assert (a.logits - b.logits).abs().max() > 1e-6  # TRN's consensus is non-linear in the frames


def test_earlier_hf_changes_tsn_logits():
    torch.manual_seed(5)
    hf = randomize(build_model("hf_tsn_bninception_demo", **SMALL, num_segments=4).double(), seed=6)
    tsn = same_weights(build_model("tsn_bninception_demo", **SMALL, num_segments=4).double(), hf)
    x = clips(2, 4, dtype=torch.float64)
    with torch.no_grad():
        assert (hf(x) - tsn(x)).abs().max() > 1e-6


def test_tsn_is_order_blind_hf_is_not():
    torch.manual_seed(7)
    tsn = randomize(build_model("tsn_bninception_demo", **SMALL, num_segments=4).double(), seed=8)
    hf = same_weights(randomize(build_model("hf_tsn_bninception_demo", **SMALL, num_segments=4).double(),
                                seed=9), tsn)
    x = clips(2, 4, dtype=torch.float64)
    with torch.no_grad():
        assert (tsn(x) - tsn(x.flip(1))).abs().max() <= 1e-10
        assert (hf(x) - hf(x.flip(1))).abs().max() > 1e-6
        # a fresh HF model (zero gates) is exactly the TSN it extends
        fresh = same_weights(build_model("hf_tsn_bninception_demo", **SMALL, num_segments=4).double(), tsn)
        assert torch.equal(fresh(x), tsn(x))


def test_concurrent_inspect_matches_sequential():
    torch.manual_seed(10)
    model = randomize(build_model("hf_tsn_bninception_demo", **SMALL, num_segments=3), seed=11)
    inputs = [clips(1, 3, seed=100 + i) for i in range(4)]
    with torch.no_grad():
        expected = [model.inspect(x) for x in inputs]
    results: list = [None] * 4
    errors: list = []
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        try:
            barrier.wait()
            with torch.no_grad():
                for _ in range(2):
                    results[i] = model.inspect(inputs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, exp in zip(results, expected):
        assert torch.allclose(got.logits, exp.logits, rtol=0, atol=1e-5)
        assert torch.allclose(got.frame_features, exp.frame_features, rtol=0, atol=1e-5)
        assert got.gates.keys() == exp.gates.keys()
        for k in exp.gates:
            assert torch.allclose(got.gates[k], exp.gates[k], rtol=0, atol=1e-6)
    # inputs differ, so equal results are not an accident
    assert (expected[0].logits - expected[1].logits).abs().max() > 1e-4


def test_trn_eval_is_deterministic():
    torch.manual_seed(12)
    model = randomize(build_model("hf_trn_bninception_demo", **SMALL, num_segments=4), seed=13)
    x = clips(2, 4)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="needs 4 frames"):
        model(clips(1, 3))


def test_rejects_bad_input_shape():
    model = build_model("tsn_bninception_demo", **SMALL, num_segments=2).eval()
    with pytest.raises(ValueError, match=r"\(N, T, 3, H, W\)"):
        model(torch.zeros(2, 3, SIZE, SIZE))


BLOCKS = tuple(f"inception_{b}" for b in ("3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))


def _hf_blocks(where) -> tuple[str, ...]:
    from hfnet_core.backbones import build_backbone

    with torch.device("meta"):
        bb = build_backbone("bninception", 0.25)
        return tuple(p.site.module for p in resolve([{"op": "hf", "where": where, "args": {}}], bb))


def test_resolve_placement():
    assert _hf_blocks("all") == BLOCKS
    assert _hf_blocks("last5") == BLOCKS[-5:]
    assert _hf_blocks("none") == ()
    assert _hf_blocks("3a") == ("inception_3a",)
    assert _hf_blocks("5b, 3a ,4c") == ("inception_3a", "inception_4c", "inception_5b")
    assert _hf_blocks(["inception_4e", "3b"]) == ("inception_3b", "inception_4e")
    with pytest.raises(ValueError, match="two temporal operators"):
        _hf_blocks(["3a", "3a"])
    with pytest.raises(ValueError) as e:
        _hf_blocks("3a,6z")
    msg = str(e.value)
    assert "'6z'" in msg and "inception_5b" in msg and "last5" in msg  # names the culprit and the choices
    with pytest.raises(ValueError, match="'a'"):
        _hf_blocks("a")
    # through the model
    model = build_model("hf_tsn_bninception_demo", **SMALL, hf_placement="3c,4e")
    assert model.hf_blocks == ("inception_3c", "inception_4e")
    with pytest.raises(ValueError, match="not a block"):
        build_model("hf_tsn_bninception_demo", **SMALL, hf_placement="layer9")


def test_config_round_trip_and_errors():
    cfg = get_config("hf_tsn_bninception_demo", hf_placement=("inception_3a", "inception_5b"))
    d = cfg.to_dict()
    assert d["temporal"] == [{"op": "hf", "where": ["inception_3a", "inception_5b"],
                              "args": {"conservative": True}}]
    assert ModelConfig.from_dict(d) == cfg
    # The first checkpoint format's fields still read, as the equivalent operator entry.
    legacy = {k: v for k, v in d.items() if k != "temporal"}
    old = ModelConfig.from_dict({**legacy, "hf_placement": ["inception_3a", "inception_5b"],
                                 "hf_conservative": False, "hf_impl": "shift"})
    assert old.temporal == [{"op": "hf", "where": ["inception_3a", "inception_5b"],
                             "args": {"conservative": False, "impl": "shift"}}]
    assert ModelConfig.from_dict({**legacy, "hf_placement": "none"}).temporal == []
    with pytest.raises(ValueError, match="both 'temporal'"):
        ModelConfig.from_dict({**d, "hf_placement": "all"})
    with pytest.raises(ValueError, match="unknown model config fields"):
        ModelConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="unknown model"):
        get_config("no_such_model")
    with pytest.raises(ValueError, match="unknown consensus"):
        build_model("tsn_bninception_demo", consensus="lstm")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("tsn_bninception_demo", backbone="vgg")
