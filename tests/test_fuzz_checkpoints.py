"""Property-based fuzzing of everything a checkpoint file can say: config values, hfnet metadata, safetensors
headers and bytes, torch zip containers and the pickles inside them (mutations of real small files written
here). Every case must end in a valid result or one clear ``HfnetError`` - never another exception - within
the memory target (peak RSS growth per case, measured where Linux lets the peak be reset).

Budget: ``HFNET_FUZZ_EXAMPLES`` examples per test (default 25, derandomized: seconds in ``make test``, the
same cases every CI run); ``make fuzz`` runs more, randomly explored. Hypothesis rather than atheris: it runs
in-process inside pytest (no separate harness or instrumented build), is pure Python, draws structured values (JSON configs, headers, opcode sequences)
rather than only bytes, and shrinks a failure to a minimal reproducible example. See docs/limits.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import struct
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors

from hfnet_core import limits
from hfnet_core.checkpoint import LoadedCheckpoint, load_checkpoint
from hfnet_core.errors import ConfigError, HfnetError
from hfnet_core.importers.safe_load import read_pickled
from hfnet_core.safetensors_file import read_header, read_tensors

from _hostile_files import edit_hfnet_metadata, join_safetensors, native_checkpoint, split_safetensors

FUZZ_EXAMPLES = int(os.environ.get("HFNET_FUZZ_EXAMPLES", "0") or 0)  # set: `make fuzz`, randomly explored
EXAMPLES = FUZZ_EXAMPLES or 25  # unset: `make test`, derandomized so CI sees the same cases every run
MEMORY_GROWTH_LIMIT = 2**30  # per case, on top of what the test process already holds (target: 1.5 GB total)
HANG_LIMIT_S = 120  # a case taking this long is a hang, not a slow machine


def fuzz_settings(scale: float = 1.0):
    return settings(max_examples=max(1, int(EXAMPLES * scale)), deadline=None, database=None,
                    derandomize=not FUZZ_EXAMPLES, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def _vm(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Assert the body's peak RSS growth and wall time stay within the limits (RSS only where the peak
    can be reset: /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _vm("VmRSS")
    except OSError:
        before = None
    t0 = time.monotonic()
    yield
    elapsed = time.monotonic() - t0
    assert elapsed < HANG_LIMIT_S, f"one case took {elapsed:.0f} s"
    peak = _vm("VmHWM")
    if before is not None and peak is not None:
        assert peak - before < MEMORY_GROWTH_LIMIT, f"peak RSS grew by {(peak - before) / 2**20:.0f} MiB"


def outcome(fn, *args, **kwargs) -> Any:
    """``fn``'s result, or the HfnetError it raised; any other exception fails the test."""
    with bounded():
        try:
            return fn(*args, **kwargs)
        except HfnetError as e:
            assert str(e).strip() and "\n" not in e.one_line()
            return e


# --- value strategies ------------------------------------------------------------------------------------

edge_ints = st.sampled_from([0, 1, -1, 2, 3, 8, 16, 31, 32, 174, 511, 512, 513, 1023, 1024, 1025, 99_999, 100_000,
                             100_001, 5_000_000, 10**9, 2**31, 2**63, 10**30])
numbers = st.one_of(st.integers(), edge_ints, st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, 0.25, 1.0, 4.0, 4.0001, 0.999, 1e-300, -0.0]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40),
                    st.sampled_from(["", "avg", "trn", "bninception", "resnet50", "all", "none", "last5", "x" * 300,
                                     "a\x00b", "8", "1e400", "matmul", "RGB", "BGR"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=12), c,
                                                                                          max_size=6), max_leaves=24)
FIELDS = ["backbone", "width_mult", "num_classes", "num_segments", "input_size", "consensus", "hf_placement",
          "hf_conservative", "hf_impl", "dropout", "input_convention", "name", "temporal"]
configs = st.dictionaries(st.sampled_from(FIELDS + ["unknown"]), json_values, max_size=8)


def _within_documented_bounds(cfg: dict[str, Any]) -> None:
    """What an accepted config must satisfy (docs/limits.md), written independently of limits.py."""
    def is_int(v):
        return type(v) is int

    if "num_classes" in cfg:
        assert is_int(cfg["num_classes"]) and 1 <= cfg["num_classes"] <= 100_000
    if "num_segments" in cfg:
        assert is_int(cfg["num_segments"]) and 1 <= cfg["num_segments"] <= 512
    if "input_size" in cfg:
        assert is_int(cfg["input_size"]) and 32 <= cfg["input_size"] <= 1024
    if "width_mult" in cfg:
        assert type(cfg["width_mult"]) in (int, float) and 0 < cfg["width_mult"] <= 4 and math.isfinite(cfg["width_mult"])
    if "dropout" in cfg:
        assert type(cfg["dropout"]) in (int, float) and 0 <= cfg["dropout"] < 1
    for key in ("backbone", "consensus", "hf_impl", "name"):
        if key in cfg:
            assert isinstance(cfg[key], str) and len(cfg[key]) <= 200 and "\x00" not in cfg[key]
    if "hf_conservative" in cfg:
        assert isinstance(cfg["hf_conservative"], bool)
    if "temporal" in cfg:
        assert isinstance(cfg["temporal"], list) and len(cfg["temporal"]) <= 64
        assert all(isinstance(t, dict) and len(json.dumps(t)) <= 4096 for t in cfg["temporal"])


@fuzz_settings(scale=4)
@given(configs)
def test_config_values_are_accepted_only_within_bounds(cfg):
    try:
        limits.check_model_config(cfg)
    except ConfigError as e:
        assert str(e).startswith("model_config")
        return
    _within_documented_bounds(cfg)


# --- hfnet metadata of a real checkpoint -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    return native_checkpoint(tmp_path_factory.mktemp("fuzz") / "base.safetensors", width_mult=0.125,
                             num_segments=2, input_size=32)


valid_values = {"input_size": st.integers(32, 1024), "dropout": st.floats(0, 0.99), "name": st.text(max_size=30),
                "num_segments": st.integers(1, 512), "hf_impl": st.sampled_from(["matmul", "shift", "concat", "x"]),
                "consensus": st.sampled_from(["avg", "tsn", "trn"]), "num_classes": st.integers(1, 10),
                "width_mult": st.sampled_from([0.125, 0.25, 1.0, 4.0]),
                "hf_placement": st.sampled_from(["none", "all", "last1", ["3a"], ["inception_5b"], "9z"])}
meta_edits = st.one_of(
    st.tuples(st.just("config"), st.sampled_from(FIELDS), json_values),
    st.tuples(st.just("config"), st.sampled_from(sorted(valid_values)), st.just(None)).flatmap(
        lambda t: st.tuples(st.just("config"), st.just(t[1]), valid_values[t[1]])),
    st.tuples(st.just("top"), st.sampled_from(["format", "format_version", "class_names", "model_config",
                                               "input_convention", "training", "extra"]), json_values),
    st.tuples(st.just("drop"), st.sampled_from(["format", "format_version", "class_names", "model_config"]),
              st.none()),
)


def _apply(meta: dict[str, Any], edits: list[tuple[str, str, Any]]) -> None:
    for where, key, value in edits:
        if where == "config" and isinstance(meta.get("model_config"), dict):
            meta["model_config"][key] = value
        elif where == "top":
            meta[key] = value
        else:
            meta.pop(key, None)


@fuzz_settings()
@given(edits=st.lists(meta_edits, min_size=1, max_size=3))
def test_edited_metadata_loads_or_fails_clearly(base_checkpoint, edits):
    with tempfile.TemporaryDirectory() as d:
        path = edit_hfnet_metadata(base_checkpoint, Path(d) / "m.safetensors", lambda m: _apply(m, edits))
        result = outcome(load_checkpoint, path)
    if isinstance(result, LoadedCheckpoint):
        _within_documented_bounds(result.config.to_dict())
        assert len(result.class_names) == result.config.num_classes


# --- safetensors bytes and headers -----------------------------------------------------------------------------


def _small_safetensors() -> bytes:
    return save_safetensors({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4),
                             "b": torch.ones(5, dtype=torch.float16), "c": torch.zeros(0, 3),
                             "d": torch.arange(3, dtype=torch.int64)}, metadata={"k": "v"})


SMALL_ST = _small_safetensors()
byte_mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, len(SMALL_ST) - 1), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, len(SMALL_ST) - 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(SMALL_ST)), st.integers(0, 255)),
    st.tuples(st.just("length"), st.sampled_from([0, 1, 7, 2**31, 2**63, 10**8, 10**8 + 1]), st.just(0)),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    b = bytearray(data)
    for kind, pos, val in mutations:
        pos = min(pos, len(b))
        if kind == "truncate":
            del b[pos:]
        elif kind == "flip" and pos < len(b):
            b[pos] ^= val
        elif kind == "insert":
            b[pos:pos] = bytes([val])
        elif kind == "length" and len(b) >= 8:
            b[:8] = (pos % 2**64).to_bytes(8, "little")
    return bytes(b)


def _read_all(path: Path) -> Any:
    return read_tensors(path, read_header(path))


@fuzz_settings(scale=4)
@given(st.lists(byte_mutations, min_size=1, max_size=4))
def test_mutated_safetensors_bytes(mutations):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.safetensors"
        path.write_bytes(_mutate(SMALL_ST, mutations))
        result = outcome(_read_all, path)
    if not isinstance(result, HfnetError):
        assert all(t.numel() <= limits.MAX_TENSOR_ELEMENTS for t in result.values())


header_values = st.one_of(json_values, st.sampled_from(["F32", "F16", "I64", "BOOL", "F128", "f32"]),
                          st.lists(st.integers(-3, 2**40), max_size=4))
header_edits = st.tuples(st.sampled_from(["a", "b", "c", "d", "__metadata__", "new"]),
                         st.sampled_from(["dtype", "shape", "data_offsets", "whole"]), header_values)


@fuzz_settings(scale=4)
@given(st.lists(header_edits, min_size=1, max_size=4))
def test_edited_safetensors_headers(edits):
    header, body = split_safetensors(SMALL_ST)
    for name, field, value in edits:
        if field == "whole" or not isinstance(header.get(name), dict):
            header[name] = value
        else:
            header[name][field] = value
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "h.safetensors"
        path.write_bytes(join_safetensors(header, body))
        result = outcome(_read_all, path)
    if not isinstance(result, HfnetError):
        assert set(result) <= {"a", "b", "c", "d", "new"}


# --- torch zip containers and pickles ---------------------------------------------------------------------


def _torch_bytes(legacy: bool) -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": {"new_fc.weight": torch.randn(4, 3), "new_fc.bias": torch.arange(4.0)}, "epoch": 3,
                "arch": "x"}, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


ZIP_PTH, LEGACY_PTH = _torch_bytes(False), _torch_bytes(True)
pth_mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, len(ZIP_PTH) - 1), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, len(ZIP_PTH) - 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(ZIP_PTH)), st.integers(0, 255)),
)


@fuzz_settings(scale=3)
@given(st.booleans(), st.lists(pth_mutations, min_size=1, max_size=4))
def test_mutated_torch_files(legacy, mutations):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.pth"
        path.write_bytes(_mutate(LEGACY_PTH if legacy else ZIP_PTH, mutations))
        outcome(read_pickled, path)


@pytest.mark.parametrize("field", [4, 16])  # the ZIP64 locator's "disk" and "number of disks"
def test_a_zip64_locator_naming_several_disks(field):
    """``zipfile.is_zipfile`` itself raises BadZipFile on this (once found by the fuzzer above)."""
    data = bytearray(ZIP_PTH)
    locator = data.rfind(b"PK\x06\x07")
    assert locator > 0
    struct.pack_into("<I", data, locator + field, 3)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.pth"
        path.write_bytes(bytes(data))
        assert isinstance(outcome(read_pickled, path), HfnetError)


def _central_directory_offsets(data: bytes) -> list[int]:
    """Offsets of every central-directory record (where the declared sizes live)."""
    out, i = [], data.find(b"PK\x01\x02")
    while i >= 0:
        out.append(i)
        i = data.find(b"PK\x01\x02", i + 4)
    return out


@fuzz_settings(scale=2)
@given(st.integers(0, 10), st.sampled_from(["compress_size", "file_size", "method"]),
       st.sampled_from([0, 1, 8, 12, 2**20, 2**31 - 1, 2**32 - 1]))
def test_zip_central_directory_lies(entry, field, value):
    data = bytearray(ZIP_PTH)
    records = _central_directory_offsets(bytes(data))
    rec = records[entry % len(records)]
    offset = {"method": 10, "compress_size": 20, "file_size": 24}[field]
    fmt = "<H" if field == "method" else "<I"
    struct.pack_into(fmt, data, rec + offset, value % (2**16 if field == "method" else 2**32))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "z.pth"
        path.write_bytes(bytes(data))
        outcome(read_pickled, path)


#: Pickle fragments: containers, memo, numbers and strings with lying lengths, globals (allowed and not),
#: reduce/build, persistent ids - the opcodes a hostile data.pkl would use.
OPCODE_FRAGMENTS = [
    b"(", b"]", b"}", b")", b"t", b"e", b"a", b"s", b"u", b"0", b"1", b"2", b"N", b"\x88", b"\x89", b"K\x05",
    b"J\xff\xff\xff\x7f", b"M\x00\x01", b"X\x05\x00\x00\x00hello", b"X\xff\xff\xff\x7fab", b"q\x00", b"h\x00",
    b"r\x00\x00\x00\x00", b"j\x00\x00\x00\x00", b"\x94", b"c__builtin__\neval\n", b"cos\nsystem\n",
    b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n", b"ccollections\nOrderedDict\n",
    b"\x8c\x05torch", b"\x8c\x0bFloatStorage", b"\x93", b"R", b"b", b"\x81", b"\x85", b"\x86", b"\x87", b"Q",
    b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x8b\xff\xff\xff\x7f", b"B\xff\xff\xff\x7f",
    b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x95\x10\x00\x00\x00\x00\x00\x00\x00", b"G\x7f\xf0\x00\x00\x00\x00\x00\x00",
    b"X\x07\x00\x00\x00storage", b"X\x01\x00\x00\x000", b"X\x03\x00\x00\x00cpu", b"(X\x07\x00\x00\x00storage"
    b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\xff\xff\xff\x7ftQ",
]
pickles = st.lists(st.sampled_from(OPCODE_FRAGMENTS), max_size=40).map(lambda ops: b"\x80\x02" + b"".join(ops) + b".")


@fuzz_settings(scale=4)
@given(pickles, st.booleans())
def test_pickles_with_odd_opcodes(data_pkl, in_zip):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.pth"
        if in_zip:
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("archive/data.pkl", data_pkl)
                z.writestr("archive/byteorder", "little")
                z.writestr("archive/data/0", bytes(64))
                z.writestr("archive/version", "3\n")
        else:
            path.write_bytes(data_pkl)
        outcome(read_pickled, path)


def test_fuzz_fragments_are_real_pickle_opcodes():
    """Sanity of the strategy above: the fragments parse as opcodes (they are not random noise)."""
    import pickletools

    ops = [op.name for op, _, _ in pickletools.genops(b"\x80\x02(K\x05X\x05\x00\x00\x00hellot\x94.")]
    assert ops == ["PROTO", "MARK", "BININT1", "BINUNICODE", "TUPLE", "MEMOIZE", "STOP"]
    assert pickle.loads(b"\x80\x02(K\x05X\x05\x00\x00\x00hellot\x94.") == (5, "hello")
