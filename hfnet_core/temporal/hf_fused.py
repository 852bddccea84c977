"""HF's fused CPU inference path: the gate and Eq. 7 in one C call that writes the block output directly.

Why: HF adds 1 % of the network's FLOPs, but its eager path (``hf.py``) runs ~25 small ops per block and
two extra passes over the features (the product with 1 - G+, then the multiply-add with the next frame)
on top of the block's own concatenation: 4-6 % of the CPU latency. Here one call (``hf_fused.c``)
computes the gate's 18 per-tap maps (register-blocked: a BLAS product with 18 output columns runs at
about half its usual speed and first packs a copy of the features), sums their 3x3 windows, applies tanh
and writes Eq. 7 for every channel part straight into its slice of the output. Given a block's branches
(``TemporalRun.join``) that replaces the concatenation, so HF's only extra pass over the features is the
read of the tap product. torch.compile (tens of seconds to compile each shape, and 4x slower here) and
Numba (a new direct dependency, seconds of JIT per process) were measured too: docs/complexity.md.

The kernel is compiled on first use (never at import) with the system C compiler (``$CC``, else ``cc`` /
``gcc``) in about a second, and cached under ``$HFNET_KERNEL_CACHE`` (default ``~/.cache/hfnet/kernels``)
by a hash of the source, flags, compiler and CPU, so later processes load it in milliseconds
(``python -m hfnet_core.temporal.hf_fused`` builds it ahead). One lock makes concurrent first callers
compile once; concurrent processes each compile to their own temporary file and rename it into place, so
a reader never sees a partial library. Without a compiler, if compiling or loading fails, or if the cache
folder cannot be written, one warning is logged and HF keeps its eager path - the same results to float32
rounding. ``HFNET_HF_FUSED=0`` (read at the first HF call of a process) turns the fused path off.

Used only where it computes what the eager path computes: float32 CPU tensors, all parts in one memory
format (contiguous or channels_last) and non-empty, no gradient needed (training, Grad-CAM and other
autograd uses stay eager). The kernel keeps no state between calls (its scratch is allocated per call),
so one cached model can serve concurrent callers.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from ..atomic import atomic_path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("hf_fused.c")
FLAGS = ("-O3", "-fno-math-errno", "-ffp-contract=fast", "-shared", "-fPIC")
#: Tried in order: this CPU's vector units and OpenMP threads; a compiler without ``-march=native``; one
#: without OpenMP (the kernel then runs single-threaded).
ATTEMPTS = (("-march=native", "-fopenmp"), ("-fopenmp",), ())
COMPILE_TIMEOUT_S = 120.0
#: Set to 0 / off / false / no to keep HF on its eager path in this process.
DISABLE_ENV = "HFNET_HF_FUSED"

_lock = threading.Lock()
_state: dict[str, object] = {"lib": None, "status": "not loaded"}


def kernel_status() -> str:
    """"not loaded", "ready (<path>)", "disabled (...)" or "unavailable: <reason>"."""
    return str(_state["status"])


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$HFNET_KERNEL_CACHE``, else ``~/.cache/hfnet/kernels`` (XDG), else a
    per-user folder in the temp dir when the home folder is not writable."""
    env = os.environ.get("HFNET_KERNEL_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidate = base / "hfnet" / "kernels"
    try:
        candidate.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(candidate, os.W_OK):
            return candidate
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"hfnet-kernels-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _compiler() -> str:
    """``$CC`` if set (and then only it), else ``cc`` or ``gcc`` on the PATH."""
    cc = os.environ.get("CC")
    if cc:
        found = shutil.which(cc)
        if found is None:
            raise RuntimeError(f"no C compiler: CC={cc} is not an executable")
        return found
    found = shutil.which("cc") or shutil.which("gcc")
    if found is None:
        raise RuntimeError("no C compiler: neither cc nor gcc is on the PATH (set CC to use another)")
    return found


def _cpu_signature() -> str:
    """The CPU's feature flags (``-march=native`` code must not run on another CPU sharing the cache)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _CompileFailed(Exception):
    """One compile attempt failed (raised inside ``atomic_path`` so that it discards the temp file)."""


def _compile(cc: str, target: Path) -> None:
    """Compile ``SOURCE`` into ``target`` (atomically), with the first of ``ATTEMPTS`` the compiler takes."""
    errors = []
    for extra in ATTEMPTS:
        try:
            with atomic_path(target) as tmp:
                cmd = [cc, *FLAGS, *extra, "-o", str(tmp), str(SOURCE), "-lm"]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
                if proc.returncode != 0:
                    raise _CompileFailed(f"{' '.join(cmd)}: {proc.stderr.strip()[-400:]}")
            return
        except _CompileFailed as e:
            errors.append(str(e))
    raise RuntimeError("; ".join(errors))


def _load() -> ctypes.CDLL:
    cc = _compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(encoding="utf-8"), repr((FLAGS, ATTEMPTS)), cc,
                                    version, platform.machine(), _cpu_signature()]).encode()).hexdigest()[:20]
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"hf_fused-{key}.so"
    if not path.exists():
        t0 = time.perf_counter()
        _compile(cc, path)
        log.info("compiled HF's fused kernel in %.1f s: %s", time.perf_counter() - t0, path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError:  # a damaged cache entry: build it again once
        path.unlink(missing_ok=True)
        _compile(cc, path)
        lib = ctypes.CDLL(str(path))
    fn = lib.hf_fused_forward
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = [i64, i64, i64, i64, ctypes.c_int, ptr, ptr, ptr, ptr, ctypes.c_float, ctypes.c_float,
                   ptr, ptr, ptr, ctypes.c_int, ctypes.c_int]
    fn.restype = ctypes.c_int
    _state["status"] = f"ready ({path})"
    return lib


def kernel() -> ctypes.CDLL | None:
    """The loaded kernel library, compiling it on the first call; None (logged once) where it cannot be built."""
    lib = _state["lib"]
    if lib is not None or _state["status"] != "not loaded":
        return lib  # type: ignore[return-value]
    with _lock:
        if _state["status"] == "not loaded":
            if os.environ.get(DISABLE_ENV, "").strip().lower() in ("0", "off", "false", "no"):
                _state["status"] = f"disabled ({DISABLE_ENV}={os.environ[DISABLE_ENV]})"
                log.info("HF runs its eager path: the fused CPU kernel is turned off by %s", DISABLE_ENV)
                return None
            try:
                _state["lib"] = _load()
            except Exception as e:  # noqa: BLE001 - whatever stops the build, the eager path still works
                _state["status"] = f"unavailable: {e}"
                log.warning("HF runs its eager path: the fused CPU kernel could not be built (%s); set %s to a "
                            "writable folder, or %s=0 to silence this", e, "HFNET_KERNEL_CACHE", DISABLE_ENV)
    return _state["lib"]  # type: ignore[return-value]


def layout_of(parts: Sequence[Tensor]) -> str | None:
    """The kernel's layout for these parts - "planar" (all contiguous) or "channels_last" - or None where the
    kernel does not apply: not float32 CPU 4-D tensors of one frame count and size, or mixed / strided memory
    (e.g. a transposed view). Runs on every HF call: cheap attribute checks only."""
    p0 = parts[0]
    if not p0.is_cpu or p0.dtype != torch.float32 or p0.dim() != 4:
        return None
    nt, _, h, w = p0.shape
    planar = True
    for p in parts:
        if not p.is_cpu or p.dtype != torch.float32 or p.dim() != 4:
            return None
        pn, c, ph, pw = p.shape
        if pn != nt or ph != h or pw != w or c == 0 or nt == 0 or h == 0 or w == 0:
            return None
        planar = planar and p.is_contiguous()
    if planar:
        return "planar"
    if all(p.is_contiguous(memory_format=torch.channels_last) for p in parts):
        return "channels_last"
    return None


class GateWeights(NamedTuple):
    """One gate's parameters as the kernel reads them: (C, 18), tap k = dt*9 + 3i + j of channel c at
    [c, k] (planar), or (C, 24) = taps 0-15 then taps 16-17 repeated four times (channels_last: one
    vector serves taps 16-17 of four pixels); and the bias."""

    taps: Tensor
    bias: float


def gate_weights(weight: Tensor, bias: Tensor, layout: str) -> GateWeights:
    """``weight`` (1, C, 2, 3, 3) and ``bias`` (1,) of a gate in the kernel's ``layout``."""
    with torch.no_grad():
        taps = weight.detach().reshape(weight.shape[1], 18).to(torch.float32)
        if layout == "channels_last":
            taps = torch.cat([taps[:, :16], taps[:, 16:].repeat(1, 4)], dim=1)
        return GateWeights(taps.contiguous(), float(bias.detach()[0]))


def hf_fused(parts: Sequence[Tensor], num_segments: int, layout: str, gate: GateWeights,
             gate_out: GateWeights | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Eq. 7 over the channel concatenation of ``parts`` (each (N*T, C_q, H, W)), as HF's eager path computes
    it: returns (output (N*T, sum C_q, H, W) in the parts' memory format, G- (N, T, H, W), G_out- or None).

    ``layout`` is ``layout_of(parts)`` (not None); ``gate`` / ``gate_out`` (the non-conservative ablation's
    second gate) come from ``gate_weights`` for that layout. Raises RuntimeError where the kernel is
    unavailable (``kernel()`` is None).
    """
    lib = kernel()
    if lib is None:
        raise RuntimeError(f"HF's fused kernel is {kernel_status()}")
    nt, _, h, w = parts[0].shape
    c_total = sum(p.shape[1] for p in parts)
    channels_last = layout == "channels_last"
    width = 24 if channels_last else 18
    if gate.taps.shape != (c_total, width) or (gate_out is not None and gate_out.taps.shape != gate.taps.shape):
        raise ValueError(f"gate taps {tuple(gate.taps.shape)} do not match {c_total} channels ({layout})")
    out = torch.empty((nt, c_total, h, w), dtype=torch.float32,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    g = torch.empty((nt // num_segments, num_segments, h, w), dtype=torch.float32)
    g_out = None if gate_out is None else torch.empty_like(g)
    ptrs = array("Q", [p.data_ptr() for p in parts])
    chans = array("q", [p.shape[1] for p in parts])
    rc = lib.hf_fused_forward(
        nt // num_segments, num_segments, h, w, len(parts), ptrs.buffer_info()[0], chans.buffer_info()[0],
        gate.taps.data_ptr(), None if gate_out is None else gate_out.taps.data_ptr(), gate.bias,
        0.0 if gate_out is None else gate_out.bias, g.data_ptr(), None if g_out is None else g_out.data_ptr(),
        out.data_ptr(), int(channels_last), torch.get_num_threads())
    if rc == 3:
        raise MemoryError(f"HF's fused kernel: no memory for the gate's maps ({nt * 18 * h * w * 4} bytes)")
    if rc:
        raise RuntimeError(f"HF's fused kernel rejected its arguments (code {rc})")
    return out, g, g_out


if __name__ == "__main__":  # build (or find) the kernel ahead, e.g. before starting the app
    logging.basicConfig(level=logging.INFO)
    kernel()
    print(kernel_status())
