"""Consensus heads beyond TSN/TRN: the GRU (a hand-run recurrence, order sensitivity, training), the
multi-task head's action bias (the formula of docs/epic.md by hand) and build_head's checks."""

from __future__ import annotations

import math

import pytest
import torch

from hfnet_core.complexity import count_flops
from hfnet_core.errors import ConfigError
from hfnet_core.heads import ACTION_BIAS_FLOOR, GRUHead, MultiTaskTSNHead, TSNHead, build_head
from hfnet_core.model import VideoClassifier, build_model, get_config


def test_gru_head_is_the_recurrence_over_frames_in_order():
    torch.manual_seed(0)
    head = GRUHead(6, 4, dropout=0.0, hidden_size=5).eval()
    f = torch.randn(3, 7, 6)
    cell = torch.nn.GRUCell(6, 5)
    with torch.no_grad():
        cell.weight_ih.copy_(head.gru.weight_ih_l0)
        cell.weight_hh.copy_(head.gru.weight_hh_l0)
        cell.bias_ih.copy_(head.gru.bias_ih_l0)
        cell.bias_hh.copy_(head.gru.bias_hh_l0)
        h = torch.zeros(3, 5)
        for t in range(7):  # frame 0 first
            h = cell(f[:, t], h)
        torch.testing.assert_close(head(f), head.new_fc(h))
        # order matters: reversing or swapping two frames changes the prediction; TSN's average does not
        assert (head(f) - head(f.flip(1))).abs().max() > 1e-4
        swapped = f[:, [1, 0, 2, 3, 4, 5, 6]]
        assert (head(f) - head(swapped)).abs().max() > 1e-5
        tsn = TSNHead(6, 4, 0.0).eval()
        torch.testing.assert_close(tsn(f), tsn(f.flip(1)))


def test_gru_model_trains_and_is_counted():
    torch.manual_seed(0)
    model = build_model("hf_gru_bninception_demo", num_classes=3, input_size=32, num_segments=4)
    assert model.config.consensus == "gru" and model.head.gru.hidden_size == 128
    x, y = torch.randn(2, 4, 3, 32, 32) * 50, torch.tensor([0, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = model.head.gru.weight_hh_l0.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert (model.head.gru.weight_hh_l0 - before).abs().max() > 0
    # FLOPs: the GRU's 3 gates x (D*H + H*H) MACs per frame, beyond a TSN whose classifier runs per frame
    with torch.device("meta"):
        gru = VideoClassifier(get_config("gru_bninception", num_classes=10))
        tsn = VideoClassifier(get_config("tsn_bninception", num_classes=10))
    d, h, t = 1024, 512, 16
    extra = count_flops(gru)["conv_linear_macs"] - count_flops(tsn)["conv_linear_macs"]
    assert extra == t * 3 * (d * h + h * h) + h * 10 - t * d * 10


def test_action_bias_by_hand():
    """verb'_v = verb_v + max(log sum_{a=(v,n)} softmax(action)_a, log 1e-6); the same for nouns."""
    verbs, nouns = 3, 2
    actions = [0 * 2 + 1, 1 * 2 + 0, 1 * 2 + 1]  # (0,1), (1,0), (1,1): verb 2 has no action class
    head = MultiTaskTSNHead(4, verbs + nouns + len(actions), 0.0, verbs, nouns, actions).eval()
    f = torch.randn(2, 5, 4)
    with torch.no_grad():
        out = head(f)
        verb = head.fc_verb(f).mean(1)
        noun = head.fc_noun(f).mean(1)
        act = head.fc_action(f).mean(1)
    p = torch.softmax(act, 1)
    for i in range(2):
        pv = [p[i, 0], p[i, 1] + p[i, 2], 0.0]
        pn = [p[i, 1], p[i, 0] + p[i, 2]]
        for v in range(verbs):
            want = verb[i, v] + max(math.log(pv[v]) if pv[v] > 0 else -math.inf, ACTION_BIAS_FLOOR)
            assert out[i, v].item() == pytest.approx(want.item(), abs=1e-5)
        for n in range(nouns):
            assert out[i, verbs + n].item() == pytest.approx((noun[i, n] + math.log(pn[n])).item(), abs=1e-5)
        torch.testing.assert_close(out[i, verbs + nouns:], act[i])
    # without the bias: plain averaged classifiers; without actions: [verb | noun] only
    plain = MultiTaskTSNHead(4, 8, 0.0, verbs, nouns, actions, action_bias=False).eval()
    plain.load_state_dict(head.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(plain(f)[:, :verbs], verb)
    assert MultiTaskTSNHead(4, 5, 0.0, verbs, nouns).eval()(f).shape == (2, 5)


def test_build_head_checks():
    assert isinstance(build_head("identity", 8, 3, 1, 0.0), TSNHead)
    with pytest.raises(ConfigError, match="one clip feature"):
        build_head("identity", 8, 3, 4, 0.0)
    with pytest.raises(ConfigError, match="hidden_size"):
        build_head("gru", 8, 3, 4, 0.0, {"hidden_size": 0})
    with pytest.raises(ConfigError, match="unknown options"):
        build_head("gru", 8, 3, 4, 0.0, {"bidirectional": 1})
    with pytest.raises(ConfigError, match="num_classes"):
        build_head("multitask", 8, 3, 4, 0.0, {"verbs": 2, "nouns": 2})
    with pytest.raises(ConfigError, match="action ids"):
        build_head("multitask", 8, 5, 4, 0.0, {"verbs": 2, "nouns": 2, "actions": [4]})
    with pytest.raises(ConfigError, match="twice"):
        build_head("multitask", 8, 6, 4, 0.0, {"verbs": 2, "nouns": 2, "actions": [1, 1]})
    with pytest.raises(ConfigError, match="unknown consensus"):
        build_head("lstm", 8, 3, 4, 0.0)
