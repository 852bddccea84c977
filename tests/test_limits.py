"""Limits before allocation: every config field type- and range-checked, model memory estimated on the meta
device (exact parameter bytes; activations that scale with the clip), tensors bounded and never expanded."""

from __future__ import annotations

import pytest
import torch

from hfnet_core import limits
from hfnet_core.errors import ConfigError, HfnetError, ResourceLimitError
from hfnet_core.heads import TRNHead
from hfnet_core.model import ModelConfig, available_models, build_model, get_config


@pytest.mark.parametrize("field, value, expect", [
    ("num_classes", 10**9, "1 to 100000"),
    ("num_classes", -1, "1 to 100000"),
    ("num_classes", 0, "1 to 100000"),
    ("num_classes", 5_000_000, "1 to 100000"),
    ("num_segments", 0, "1 to 512"),
    ("num_segments", 100_000, "1 to 512"),
    ("num_segments", "8", "not an integer"),
    ("num_segments", 8.5, "not an integer"),
    ("num_segments", 8.0, "not an integer"),
    ("num_segments", True, "not an integer"),  # a bool is not a count
    ("num_segments", None, "not an integer"),
    ("input_size", 0, "32 to 1024"),
    ("input_size", 100_000, "32 to 1024"),
    ("width_mult", 0, "(0, 4]"),
    ("width_mult", 4.5, "(0, 4]"),
    ("width_mult", float("nan"), "not a finite number"),
    ("width_mult", float("inf"), "not a finite number"),
    ("width_mult", "1.0", "not a finite number"),
    ("dropout", 1.0, "[0, 1)"),
    ("dropout", -0.1, "[0, 1)"),
    ("backbone", "x" * 201, "at most 200"),
    ("backbone", "", "empty"),
    ("backbone", 3, "not a string"),
    ("consensus", ["trn"], "not a string"),
    ("name", "a\x00b", "NUL"),
    ("hf_conservative", 1, "not true or false"),
    ("hf_impl", None, "not a string"),
    ("hf_placement", 7, "neither a preset"),
    ("hf_placement", ["3a"] * 257, "at most 256"),
    ("hf_placement", ["3a", 4], "not a string"),
    ("input_convention", {"channel_order": "XYZ", "scale": 1, "mean": [0, 0, 0], "std": [1, 1, 1]}, "channel_order"),
    ("input_convention", {"channel_order": "RGB", "scale": 1, "mean": [0, 0], "std": [1, 1, 1]}, "3 numbers"),
    ("input_convention", {"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0], "std": [0, 1, 1]}, "std[0]"),
    ("temporal", {"op": "hf"}, "not a list"),
    ("temporal", [{"op": "hf", "where": "all", "args": {}}] * 65, "at most 64"),
    ("temporal", ["hf"], "not an object"),
    ("temporal", [{"op": "hf", "args": {"pad": "x" * 5000}}], "at most 4096"),
    ("temporal", [{"op": "hf", "args": {"w": float("nan")}}], "plain JSON"),
])
def test_bad_field_is_refused_by_name(field, value, expect):
    with pytest.raises(ConfigError) as e:
        limits.check_model_config({field: value})
    assert f"model_config.{field}" in str(e.value) and expect in str(e.value)


def test_bounds_and_legacy_fields_are_accepted():
    ok = {"backbone": "bninception", "num_classes": 100_000, "num_segments": 512, "input_size": 1024,
          "width_mult": 4, "dropout": 0.0, "hf_placement": ["3a", "inception_4e"], "hf_conservative": False,
          "hf_impl": "shift", "consensus": "avg", "name": "", "input_convention": None,
          "temporal": [{"op": "hf", "where": ["3a", "4e"], "args": {"conservative": True}}] * 64}
    assert limits.check_model_config(ok) == ok
    assert limits.check_model_config({"num_classes": 1, "num_segments": 1, "input_size": 32, "width_mult": 1e-3})
    limits.check_model_config({"hf_placement": "last5", "future_field": 1})  # unknown: left to ModelConfig
    limits.check_model_config(get_config("hf_tsn_bninception").to_dict())


def test_not_a_dict_and_class_names_and_format_version():
    with pytest.raises(ConfigError, match="not an object"):
        limits.check_model_config([1, 2])
    assert limits.check_class_names(["a", "b"], 2) == ["a", "b"]
    for names, expect in [(["a"] * 100_001, "at most 100000"), (["a" * 257], "at most 256"), ([3], "not a string"),
                          ("abc", "not a list"), (["a"], "1 class names for 2")]:
        with pytest.raises(ConfigError, match=expect):
            limits.check_class_names(names, 2 if expect.startswith("1 class") else None)
    assert limits.check_format_version(1, 1) == 1
    for v, expect in [("abc", "not a format version"), (0, "not a format version"), (True, "not a format version"),
                      (1.0, "not a format version"), (None, "not a format version"), (99, "newer hfnet")]:
        with pytest.raises(ConfigError, match=expect):
            limits.check_format_version(v, 1)


def test_max_model_bytes_default_env_and_argument(monkeypatch):
    monkeypatch.delenv(limits.ENV_MAX_MODEL_BYTES, raising=False)
    assert limits.max_model_bytes() == limits.DEFAULT_MAX_MODEL_BYTES == 4 * 2**30
    for raw, want in [("123", 123), ("16G", 16 * 2**30), ("512MiB", 512 * 2**20), ("1.5k", 1536), (" 2T ", 2 * 2**40)]:
        monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, raw)
        assert limits.max_model_bytes() == want
    assert limits.max_model_bytes(1000) == 1000  # the argument wins over the environment
    for raw in ("lots", "-5", "0", "nan"):
        monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, raw)
        with pytest.raises(ConfigError, match=limits.ENV_MAX_MODEL_BYTES):
            limits.max_model_bytes()


def test_parameter_bytes_are_exact():
    for name in ("hf_tsn_bninception_demo", "hf_trn_bninception_demo", "tsn_resnet18_demo"):
        cfg = get_config(name, num_classes=7, num_segments=4)
        real = sum(t.numel() * t.element_size() for t in build_model(cfg).state_dict().values())
        assert limits.estimate_model_memory(cfg).parameter_bytes == real, name


def test_every_registered_model_is_measured_and_fits():
    """The paper's models (full width, 16 frames, 174 classes) are well inside the default limit; if a model
    stops running on the meta device this fails instead of its activations silently going uncounted.
    (The reduced-width demo variants share these architectures; test_parameter_bytes_are_exact runs them.)"""
    for name in [n for n in available_models() if not n.endswith("_demo")]:
        need = limits.check_model_memory(get_config(name))
        assert need.activations_measured and need.activation_bytes > 0, name
        assert need.total < limits.DEFAULT_MAX_MODEL_BYTES / 4, (name, need.describe())


def test_activations_scale_with_the_clip():
    base = get_config("tsn_bninception_demo")
    a8 = limits.estimate_model_memory(base.replace(num_segments=8)).activation_bytes
    a16 = limits.estimate_model_memory(base.replace(num_segments=16)).activation_bytes
    big = limits.estimate_model_memory(base.replace(num_segments=8, input_size=224)).activation_bytes
    assert a16 == pytest.approx(2 * a8, rel=0.02)  # every activation of a TSN is per frame
    assert big == pytest.approx(4 * a8, rel=0.05)  # and per pixel (112 -> 224 px)
    assert limits.estimate_model_memory(base.replace(num_classes=50_000)).parameter_bytes > \
        limits.estimate_model_memory(base).parameter_bytes + 50_000 * 256 * 4 - 1


def test_large_configs_are_refused_with_what_they_need(monkeypatch):
    monkeypatch.delenv(limits.ENV_MAX_MODEL_BYTES, raising=False)
    for cfg in [dict(num_segments=512), dict(input_size=1024, num_segments=64),
                dict(backbone="resnet101", width_mult=4.0, num_classes=100_000, hf_placement="none")]:
        with pytest.raises(ResourceLimitError) as e:
            limits.check_model_memory(cfg, path="x.safetensors")
        msg = str(e.value)
        assert msg.startswith("x.safetensors: ") and "over the limit of 4.00 GiB" in msg
        assert limits.ENV_MAX_MODEL_BYTES in msg and "of activations" in msg
    demo = get_config("tsn_bninception_demo")
    with pytest.raises(ResourceLimitError):
        limits.check_model_memory(demo, max_bytes=2**20)
    monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, "1M")
    with pytest.raises(ResourceLimitError, match="1.0 MiB"):
        limits.checked_meta_model(demo)
    monkeypatch.setenv(limits.ENV_MAX_MODEL_BYTES, "64G")
    limits.check_model_memory(dict(num_segments=512))  # a bigger machine may allow it


def test_trn_with_many_segments_is_refused_before_construction(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the TRN head was constructed")

    monkeypatch.setattr(TRNHead, "__init__", never)
    for t in (40, 512):
        with pytest.raises(ResourceLimitError, match=f"TRN head over {t} frames"):
            limits.check_model_memory({"consensus": "trn", "num_segments": t})
    monkeypatch.undo()
    # 24 frames (2.7 GB before TRN heads stopped listing every tuple) is now a bounded, ordinary head
    assert limits.check_model_memory({"consensus": "trn", "num_segments": 24}).total < 2**31


def test_trn_at_paper_scale_is_measured():
    monkey = limits.check_model_memory(get_config("hf_trn_bninception"))  # 16 frames, 174 classes
    assert monkey.bookkeeping_bytes > 0 and monkey.total < 2**30


def test_meta_model_is_on_the_meta_device_and_config_errors_are_config_errors():
    m = limits.checked_meta_model(get_config("hf_tsn_bninception_demo"))
    assert all(t.is_meta for t in m.state_dict().values())
    with pytest.raises(ConfigError, match="cannot build"):
        limits.checked_meta_model({"backbone": "vgg16"})
    with pytest.raises(ConfigError, match="cannot build"):
        limits.checked_meta_model({"hf_placement": "9z"})
    with pytest.raises(ConfigError, match="cannot build"):
        limits.checked_meta_model({"unknown_field": 1})
    assert isinstance(ConfigError("x"), HfnetError)


def test_check_tensor_refuses_expanded_and_oversized_views():
    assert limits.check_tensor("w", torch.zeros(3, 4)) == 48
    limits.check_tensor("t", torch.zeros(3, 4).t())  # strided but not overlapping: fine
    limits.check_tensor("s", torch.zeros(10, 10)[::2, 1:])
    limits.check_tensor("one", torch.zeros(1).expand(1, 1))
    with pytest.raises(ResourceLimitError, match=r"expanded view .* repeat 1 stored values"):
        limits.check_tensor("fc", torch.zeros(1, 1).expand(1000, 256))
    with pytest.raises(ResourceLimitError, match="expanded"):
        limits.check_tensor("overlap", torch.zeros(10).as_strided((4, 4), (1, 1)))
    with pytest.raises(ResourceLimitError, match="declares 2,147,483,648 elements"):
        limits.check_tensor("huge", torch.empty(2**31, device="meta"))
    with pytest.raises(ResourceLimitError, match="its tensors take"):
        limits.check_tensors({"a": torch.zeros(1000), "b": torch.zeros(1000)}, "f.pth", max_bytes=6000)
    for shape in ([-1], [2.0], "3", [1] * 17, [True]):
        with pytest.raises(ResourceLimitError, match="not a list of at most 16"):
            limits.check_declared_elements("x", shape)


def test_model_config_defaults_match_the_checks():
    """ModelConfig's own defaults pass: the checks describe the same model the library builds."""
    limits.check_model_config(ModelConfig().to_dict())
