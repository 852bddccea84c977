"""HF's fused CPU path (hfnet_core/temporal/hf_fused.py + hf_fused.c) against the eager reference (hf.py).

The eager path is itself tested against the paper's per-frame Eq. 1-2 (tests/test_hf.py); here the fused
kernel must compute the same function in float32: outputs within 2e-6 x the largest output magnitude
(the 18 x C product sums up to ~1000 terms in another order), gates within 1e-5 (tanh of those sums), the
last frame's gate exactly 0, the same memory format, bit-identical results for any thread count. Also:
when it is used and when not (autograd, other dtypes, strided inputs), the block hand-off
(``TemporalRun.join``), the compile cache (one compile for concurrent first callers), and the fallback
without a compiler. Concurrent inference on one shared HF model (now on this path) is tested in
tests/test_model.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from hfnet_core.model import build_model
from hfnet_core.temporal import hf_fused
from hfnet_core.temporal.base import TemporalOperator, TemporalRun
from hfnet_core.temporal.hf import HFModule

REPO = Path(__file__).resolve().parents[1]
OUT_RTOL, GATE_ATOL = 2e-6, 1e-5

needs_kernel = pytest.mark.skipif(hf_fused.kernel() is None,
                                  reason=f"no fused kernel here: {hf_fused.kernel_status()}")


def random_hf(channels: int, conservative: bool = True, seed: int = 0, scale: float = 0.1) -> HFModule:
    torch.manual_seed(seed)
    m = HFModule(channels, conservative=conservative)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, scale)
    return m


def random_parts(nt: int, chans: list[int], h: int, w: int, channels_last: bool, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(nt, c, h, w, generator=g) for c in chans]
    return [p.contiguous(memory_format=torch.channels_last) for p in parts] if channels_last else parts


def eager(m: HFModule, x, t: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    m.fused = False
    try:
        return m(x, t)
    finally:
        m.fused = True


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def assert_close_to_eager(out, maps, ref, ref_maps) -> None:
    assert (out - ref).abs().max() <= OUT_RTOL * max(1.0, ref.abs().max().item())
    assert maps.keys() == ref_maps.keys()
    for k in ref_maps:
        assert (maps[k] - ref_maps[k]).abs().max() <= GATE_ATOL, k
        assert torch.equal(maps[k][:, -1], torch.zeros_like(maps[k][:, -1]))
    assert out.is_contiguous() == ref.is_contiguous()
    assert out.is_contiguous(memory_format=torch.channels_last) == ref.is_contiguous(memory_format=torch.channels_last)


@needs_kernel
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("conservative", [True, False])
@pytest.mark.parametrize("t_len,n,chans,hw", [
    (8, 1, [64, 64, 96, 32], (28, 28)),  # an Inception block's branches, 3a at width 1
    (3, 2, [5, 7], (5, 6)),              # 30 pixels: a shifted last 16-pixel block
    (4, 2, [17, 3, 9], (7, 7)),
    (2, 3, [20], (4, 5)),                # one tensor (not a block's parts), 20 pixels
    (1, 2, [4], (3, 3)),                 # one frame: no neighbour, the identity
    (2, 1, [3, 1], (1, 1)),              # a single pixel, a one-channel part
    (5, 1, [8, 8], (2, 9)),              # maps smaller than one 16-pixel block
])
def test_fused_matches_eager(channels_last, conservative, t_len, n, chans, hw):
    m = random_hf(sum(chans), conservative, seed=t_len)
    parts = random_parts(n * t_len, chans, *hw, channels_last)
    x = torch.cat(parts, dim=1)
    with torch.inference_mode():
        ref, ref_maps = eager(m, x, t_len)
        results = [m(given, t_len) for given in (parts, x)]  # a block's parts, or the concatenated tensor
    for out, maps in results:
        assert_close_to_eager(out, maps, ref, ref_maps)
    # the same sums in the same order: bit for bit (what TemporalRun.join's contract asks)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1]["gate"], results[1][1]["gate"])
    if t_len == 1:
        assert torch.equal(out, x)


@needs_kernel
def test_fused_path_is_taken_only_where_it_applies(monkeypatch):
    calls = []
    real = hf_fused.hf_fused
    monkeypatch.setattr(hf_fused, "hf_fused", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = random_hf(12)
    x = torch.randn(6, 12, 5, 5)
    with torch.no_grad():  # what `hfnet eval` runs
        m(x, 3)
    with torch.inference_mode():  # what the app runs
        m(x, 3)
    assert len(calls) == 2
    with torch.no_grad():
        m(x.double(), 3)                            # float64: eager
        m(x.transpose(2, 3), 3)                     # a strided view: eager
        m([x[:, :5], x[:, 5:].contiguous(memory_format=torch.channels_last)], 3)  # mixed formats: eager
        m.fused = False
        m(x, 3)
        m.fused = True
    assert len(calls) == 2
    # autograd (training, Grad-CAM) stays on the eager path, and gradients reach the gate
    out, _ = m(x.requires_grad_(), 3)
    out.square().sum().backward()
    assert len(calls) == 2 and m.gate.weight.grad is not None and m.gate.weight.grad.abs().sum() > 0


@needs_kernel
def test_thread_count_does_not_change_the_result():
    m = random_hf(40, seed=3)
    parts = random_parts(16, [24, 16], 9, 11, channels_last=True)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outs.append(m(parts, 8))
    finally:
        torch.set_num_threads(before)
    for out, maps in outs[1:]:
        assert torch.equal(out, outs[0][0]) and torch.equal(maps["gate"], outs[0][1]["gate"])


@needs_kernel
def test_changed_gate_parameters_are_picked_up():
    """The kernel's copy of the gate weights follows in-place updates and replaced parameters."""
    m = random_hf(10, seed=4)
    x = torch.randn(4, 10, 6, 6)
    with torch.inference_mode():
        first, _ = m(x, 2)
    with torch.no_grad():
        m.gate.weight.mul_(-2.0)
        m.gate.bias.add_(0.3)
    with torch.inference_mode():
        out, maps = m(x, 2)
        assert_close_to_eager(out, maps, *eager(m, x, 2))
    assert not torch.allclose(out, first)
    m.load_state_dict(random_hf(10, seed=5).state_dict())
    with torch.inference_mode():
        assert_close_to_eager(*m(x, 2), *eager(m, x, 2))
    with torch.inference_mode():  # a module built under inference_mode: parameters without versions
        m2 = random_hf(10, seed=6)
        assert_close_to_eager(*m2(x, 2), *eager(m2, x, 2))


@needs_kernel
def test_rejects_mismatched_gate():
    parts = random_parts(4, [3, 3], 4, 4, channels_last=False)
    gate = hf_fused.gate_weights(torch.zeros(1, 5, 2, 3, 3), torch.zeros(1), "planar")
    with pytest.raises(ValueError, match="do not match 6 channels"):
        hf_fused.hf_fused(parts, 2, "planar", gate)
    assert hf_fused.layout_of([torch.zeros(4, 3, 4, 4), torch.zeros(4, 3, 4, 5)]) is None
    assert hf_fused.layout_of([torch.zeros(4, 3, 4, 4, dtype=torch.float16)]) is None


@needs_kernel
@pytest.mark.parametrize("channels_last", [False, True])
def test_model_fused_equals_eager_and_taps_change_nothing(channels_last):
    torch.manual_seed(7)
    model = build_model("hf_tsn_bninception", num_segments=4, num_classes=6, width_mult=0.25).eval()
    with torch.no_grad():
        for p in model.hf.parameters():
            p.normal_(0.0, 0.05)
    if channels_last:
        model.base_model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 3, 64, 64) * 50
    with torch.inference_mode():
        for m in model.hf.values():
            m.fused = False
        ref = model.forward_intermediates(x, taps=["inception_3b:out", "hf.inception_3b"])
        for m in model.hf.values():
            m.fused = True
        got = model.inspect(x)
        logits = model(x)
        tapped = model.forward_intermediates(x, taps=["inception_3b:out", "hf.inception_3b"])
    assert rel_err(got.logits, ref.logits) <= 1e-4
    assert got.gates.keys() == ref.gates.keys()
    for k in ref.gates:
        assert (got.gates[k] - ref.gates[k]).abs().max() <= GATE_ATOL
    assert torch.equal(logits, got.logits)
    # asking for the block's concatenation (which the fused path never materialises) changes nothing
    assert torch.equal(tapped.logits, logits)
    for tap in ("inception_3b:out", "hf.inception_3b"):  # the same tensors as on the eager path
        assert rel_err(tapped.intermediates[tap], ref.intermediates[tap]) <= 1e-5, tap
    assert got.temporal["hf.inception_3b"].input_shape == ref.temporal["hf.inception_3b"].input_shape


class _Recorder(TemporalOperator):
    """A test operator that doubles its input and remembers what kind of input it got."""

    op_name = "recorder"

    def __init__(self, accepts: bool) -> None:
        super().__init__()
        self.accepts_parts = accepts
        self.seen: list[type] = []

    def forward(self, x, num_segments, inspect=False):
        self.seen.append(type(x))
        y = torch.cat(x, dim=1) if isinstance(x, list) else x
        return y * 2, {}


@pytest.mark.parametrize("accepts", [False, True])
def test_join_hands_parts_only_to_operators_that_take_them(accepts):
    parts = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)]
    cat = torch.cat(parts, dim=1)
    op = _Recorder(accepts)
    run = TemporalRun({"blk:out": op}, 2, record=True, taps={"recorder.blk"})
    y = run.at("blk", "out", run.join("blk", parts))  # how a block and the model's loop call it
    assert torch.equal(y, cat * 2)  # applied once, not twice
    assert op.seen == ([list] if accepts else [torch.Tensor])
    assert torch.equal(run.tapped["recorder.blk"], y)
    assert run.records["recorder.blk"].input_shape == (2, 8, 4, 4)
    # a tapped concatenation is what the operator gets (a gradient at the tap flows through it)
    leaf = [p.clone().requires_grad_() for p in parts]
    tapped = TemporalRun({"blk:out": op}, 2, taps={"blk:out"})
    y = tapped.at("blk", "out", tapped.join("blk", leaf))
    assert op.seen[-1] is torch.Tensor and torch.equal(tapped.tapped["blk:out"], cat)
    (grad,) = torch.autograd.grad(y.sum(), tapped.tapped["blk:out"])
    assert torch.equal(grad, torch.full_like(cat, 2.0))
    names = TemporalRun({"blk:out": op}, 2, collect_names=True)
    names.at("blk", "out", names.join("blk", parts))
    assert names.names == ["blk:out", "recorder.blk"]
    plain = TemporalRun({}, 2)
    assert torch.equal(plain.at("blk", "out", plain.join("blk", parts)), cat)


def _reset_kernel_state(monkeypatch, cache: Path) -> None:
    monkeypatch.setenv("HFNET_KERNEL_CACHE", str(cache))
    monkeypatch.setattr(hf_fused, "_state", {"lib": None, "status": "not loaded"})


@needs_kernel
def test_compiled_once_cached_on_disk_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    compiles = []
    real = hf_fused._compile
    monkeypatch.setattr(hf_fused, "_compile", lambda cc, target: compiles.append(target) or real(cc, target))
    _reset_kernel_state(monkeypatch, tmp_path)
    libs = []
    barrier = threading.Barrier(4)

    def first_call():
        barrier.wait()
        libs.append(hf_fused.kernel())

    threads = [threading.Thread(target=first_call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(compiles) == 1 and all(lib is libs[0] and lib is not None for lib in libs)
    (so,) = tmp_path.glob("hf_fused-*.so")
    # a new process finds it in the cache
    _reset_kernel_state(monkeypatch, tmp_path)
    assert hf_fused.kernel() is not None and len(compiles) == 1
    # a damaged cache entry (in another folder: the loaded file itself must stay intact) is rebuilt
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / so.name).write_bytes(b"not a shared library")
    _reset_kernel_state(monkeypatch, damaged)
    assert hf_fused.kernel() is not None and len(compiles) == 2
    assert hf_fused.kernel_status() == f"ready ({damaged / so.name})"


def test_without_a_compiler_hf_runs_eager_and_says_so(tmp_path):
    """Never compiled at import or model construction; with no compiler, one warning and the eager path."""
    script = r"""
import logging, torch
logging.basicConfig(level=logging.WARNING)
from hfnet_core.model import build_model
from hfnet_core.temporal import hf_fused
m = build_model("hf_tsn_bninception", num_segments=2, num_classes=3, width_mult=0.25).eval()
assert hf_fused.kernel_status() == "not loaded", hf_fused.kernel_status()
for p in m.hf.parameters():
    torch.nn.init.normal_(p, 0.0, 0.05)
x = torch.randn(1, 2, 3, 64, 64) * 50
with torch.inference_mode():
    a = m.inspect(x)
    for h in m.hf.values():
        h.fused = False
    b = m.inspect(x)
assert torch.equal(a.logits, b.logits)
print("STATUS", hf_fused.kernel_status())
"""
    env = {**os.environ, "CC": str(tmp_path / "no-such-compiler"), "HFNET_KERNEL_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "STATUS unavailable: no C compiler: CC=" in proc.stdout
    assert proc.stderr.count("HF runs its eager path") == 1
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.so"))


def _eager_equal_forward(m: HFModule, x: torch.Tensor, t: int, monkeypatch) -> None:
    """``m`` runs without calling the kernel and gives exactly the eager result."""
    calls = []
    monkeypatch.setattr(hf_fused, "hf_fused", lambda *a, **k: calls.append(1))
    with torch.inference_mode():
        out, maps = m(x, t)
        ref, ref_maps = eager(m, x, t)
    assert not calls and torch.equal(out, ref) and torch.equal(maps["gate"], ref_maps["gate"])


def test_env_var_turns_the_fused_path_off(tmp_path, monkeypatch, caplog):
    _reset_kernel_state(monkeypatch, tmp_path)
    monkeypatch.setenv(hf_fused.DISABLE_ENV, "0")
    with caplog.at_level("INFO", logger=hf_fused.__name__):
        assert hf_fused.kernel() is None and hf_fused.kernel() is None
    assert hf_fused.kernel_status() == f"disabled ({hf_fused.DISABLE_ENV}=0)"
    assert len(caplog.records) == 1 and caplog.records[0].levelname == "INFO"  # asked for: not a warning
    _eager_equal_forward(random_hf(6), torch.randn(4, 6, 5, 5), 2, monkeypatch)
    assert not list(tmp_path.iterdir())  # nothing compiled


def test_failed_compile_falls_back_once_and_leaves_nothing(tmp_path, monkeypatch, caplog):
    """A compiler that fails every attempt (here a script that exits 1): one warning, eager results, and no
    partial library or temp file in the cache."""
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\necho 'internal compiler error' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    cache = tmp_path / "cache"
    _reset_kernel_state(monkeypatch, cache)
    with caplog.at_level("WARNING", logger=hf_fused.__name__):
        assert hf_fused.kernel() is None and hf_fused.kernel() is None
    status = hf_fused.kernel_status()
    assert status.startswith("unavailable: ") and "internal compiler error" in status
    assert status.count("broken-cc") == len(hf_fused.ATTEMPTS)  # every flag set was tried
    assert len(caplog.records) == 1 and "eager path" in caplog.records[0].getMessage()
    assert not list(cache.iterdir())
    _eager_equal_forward(random_hf(6), torch.randn(4, 6, 5, 5), 2, monkeypatch)


def test_unwritable_cache_folder_falls_back(tmp_path, monkeypatch, caplog):
    """A cache path that cannot be a folder (below a regular file; a read-only folder fails the same way for
    a user who is not root)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _reset_kernel_state(monkeypatch, blocker / "kernels")
    with caplog.at_level("WARNING", logger=hf_fused.__name__):
        assert hf_fused.kernel() is None
    assert hf_fused.kernel_status().startswith("unavailable: ") and len(caplog.records) == 1
    _eager_equal_forward(random_hf(6), torch.randn(4, 6, 5, 5), 2, monkeypatch)


@needs_kernel
def test_two_processes_compiling_at_once_share_one_library(tmp_path):
    script = "from hfnet_core.temporal import hf_fused; hf_fused.kernel(); print(hf_fused.kernel_status())"
    env = {**os.environ, "HFNET_KERNEL_CACHE": str(tmp_path),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop(hf_fused.DISABLE_ENV, None)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=REPO) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    (so,) = tmp_path.iterdir()  # one library, no temp file left behind
    assert so.name.startswith("hf_fused-") and so.suffix == ".so"
    assert all(o[0].strip() == f"ready ({so})" for o in outs)


def test_inputs_the_kernel_does_not_take():
    x = torch.zeros(4, 3, 4, 4)
    assert hf_fused.layout_of([x]) == "planar"
    assert hf_fused.layout_of([x[:0]]) is None                        # no frames
    assert hf_fused.layout_of([torch.zeros(4, 3, 0, 4)]) is None      # no pixels
    assert hf_fused.layout_of([x.to("meta")]) is None                  # not on the CPU (CUDA, ...)
    assert hf_fused.layout_of([x.to(torch.bfloat16)]) is None
    assert hf_fused.layout_of([x, torch.zeros(4, 2, 4, 4, dtype=torch.float64)]) is None
    assert hf_fused.layout_of([x[:, :, :, :2]]) is None                # a strided view
    assert hf_fused.layout_of([torch.zeros(4, 3, 4)]) is None          # not 4-D
    m = random_hf(3)
    with torch.inference_mode():
        out, maps = m(x[:0], 2)  # an empty batch runs eager, as before
    assert out.shape == (0, 3, 4, 4) and maps["gate"].shape == (0, 2, 4, 4)


@needs_kernel
def test_replaced_gate_parameter_is_picked_up():
    m = random_hf(10, seed=4)
    x = torch.randn(4, 10, 6, 6)
    with torch.inference_mode():
        m(x, 2)
    m.gate.weight = torch.nn.Parameter(torch.randn(1, 10, 2, 3, 3) * 0.1)
    m.gate.bias = torch.nn.Parameter(torch.full((1,), 0.2))
    with torch.inference_mode():
        assert_close_to_eager(*m(x, 2), *eager(m, x, 2))


@needs_kernel
def test_gradients_of_the_default_model_are_the_eager_ones(monkeypatch):
    """Grad-CAM / IG ask for gradients: the default (fused) model takes the eager path for them and gives
    exactly the reference model's gradients, for the input and the gate weights."""
    calls = []
    real = hf_fused.hf_fused
    monkeypatch.setattr(hf_fused, "hf_fused", lambda *a, **k: calls.append(1) or real(*a, **k))
    torch.manual_seed(3)
    model = build_model("hf_tsn_bninception", num_segments=2, num_classes=4, width_mult=0.25).eval()
    with torch.no_grad():
        for p in model.hf.parameters():
            p.normal_(0.0, 0.05)
    x = torch.randn(1, 2, 3, 64, 64) * 50

    def grads() -> tuple[torch.Tensor, ...]:
        xi = x.clone().requires_grad_()
        model.zero_grad()
        model(xi)[0, 1].backward()
        return (xi.grad, *(m.gate.weight.grad.clone() for m in model.hf.values()))

    fused = grads()
    for m in model.hf.values():
        m.fused = False
    reference = grads()
    assert not calls
    assert all(torch.equal(a, b) for a, b in zip(fused, reference))
    # (the last block's gate gets none: with conservative HF, the frame average the head takes after it
    # does not depend on it)
    assert fused[0].abs().sum() > 0 and fused[1].abs().sum() > 0


@needs_kernel
@pytest.mark.parametrize("channels_last", [False, True])
def test_concurrent_callers_of_one_module_get_their_own_results(channels_last):
    """App sessions share one cached model: the kernel keeps no state between calls (scratch per call, the
    GIL released during it), so concurrent calls give exactly what each gives alone."""
    m = random_hf(48, seed=8)
    inputs = [random_parts(12, [16, 32], 14, 14, channels_last, seed=20 + i) for i in range(4)]
    with torch.inference_mode():
        expected = [m(p, 4) for p in inputs]
    results: list = [None] * 4
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        with torch.inference_mode():
            for _ in range(5):
                results[i] = m(inputs[i], 4)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (out, maps), (ref, ref_maps) in zip(results, expected):
        assert torch.equal(out, ref) and torch.equal(maps["gate"], ref_maps["gate"])
