"""A fused CPU kernel for a KAN layer's jet on a uniform grid (value, gradient and second
derivatives pushed forward, and the backward of all of it), built from `csrc/kan_jet.cpp`.

Why: in torch ops the jet of a layer is dozens of small memory-bound passes over (N, n_in, G+k)
or (N, n_in, n_out) temporaries, and its dense form multiplies by the G + k - (k + 1) bases that
are zero at every point. The kernel visits each (point, input) once, touches only the k + 1
non-zero bases of its cell, and keeps the temporaries in registers and L1.

The source is compiled on first use with the system C++ compiler (`c++ -O3 -march=native
-fopenmp`, about 10 s) into a cache folder (`$KANPDE_CACHE`, else `~/.cache/kanpde`), keyed by the
source, compiler flags and machine, and loaded with ctypes; no torch headers are needed. Where it
cannot be used (no compiler, CUDA tensors, non-uniform knots, other dtypes than float32/64, inside
torch.compile, during nested autograd, with `KANPDE_KERNEL=0` or the run setting `kernel: false`),
`KANLayer` uses its torch path: same results. The kernel's backward is first order only
(`once_differentiable`): differentiating a gradient of the model (nested autograd, as
`kanpde.derivatives.autograd_jet` does) needs the torch path, so wrap such code in
`switched(False)`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "kan_jet.cpp"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
_SUFFIX = {torch.float64: "f64", torch.float32: "f32"}

_lib: ctypes.CDLL | None = None
_tried = False
enabled = os.environ.get("KANPDE_KERNEL", "1") != "0"  # see `switched`


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """Within the block, use the kernel only if `on` (and usable). Nested autograd needs it off:
    the kernel's backward is not itself differentiable."""
    global enabled
    old, enabled = enabled, bool(on)
    try:
        yield
    finally:
        enabled = old


def _cache_dir() -> Path:
    return Path(os.environ.get("KANPDE_CACHE") or Path.home() / ".cache" / "kanpde")


def _build() -> ctypes.CDLL:
    """Compile (if not cached) and load the kernel library; raises on failure."""
    compiler = os.environ.get("CXX", "c++")
    text = SOURCE.read_bytes()
    key = hashlib.sha256(text + " ".join([compiler, *FLAGS, platform.machine(), platform.node()]).encode())
    target = _cache_dir() / f"kan_jet-{key.hexdigest()[:16]}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build beside the target and rename: parallel jobs never load a half-written library.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], check=True, capture_output=True, text=True)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(target))
    for suffix in _SUFFIX.values():
        getattr(lib, f"kan_jet_forward_{suffix}").restype = None
        getattr(lib, f"kan_jet_backward_{suffix}").restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel, building it on the first call; None if it cannot be built."""
    global _lib, _tried
    if not _tried:
        _tried = True
        try:
            _lib = _build()
        except Exception as exc:  # no compiler, no writable cache, no home folder...: torch path
            detail = getattr(exc, "stderr", "") or str(exc)
            log.warning("kanpde: C++ kernel not available (%s); using the torch path",
                        detail.strip().splitlines()[-1] if detail.strip() else type(exc).__name__)
    return _lib


MAX_ORDER, MAX_D, MAX_P = 7, 16, 136  # the kernel's fixed-size local arrays (csrc/kan_jet.cpp)


def usable(x: Tensor, order: int, d: int = 0, p: int = 0) -> bool:
    """Whether a layer's jet at inputs x (order k, d gradient and p second-derivative channels)
    can take the kernel; the caller checks that the knots are uniform."""
    if not enabled or x.device.type != "cpu" or x.dtype not in _SUFFIX:
        return False
    if not (1 <= order <= MAX_ORDER and d <= MAX_D and p <= MAX_P):
        return False
    if getattr(torch.compiler, "is_compiling", lambda: False)():  # traced: let dynamo see torch ops
        return False
    return library() is not None


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


class _LayerJet(torch.autograd.Function):
    """(value, grad, second) from x, dh, d2h, m2, coef, wb; see `layer_jet`."""

    @staticmethod
    def forward(ctx, x, dh, d2h, m2, coef, wb, t0, h, order):
        n, n_in = x.shape
        d, p = dh.shape[-1], d2h.shape[-1]
        n_out, k_basis = coef.shape[2], coef.shape[1]
        n_cells = k_basis + order  # cells of the knot span: G + 2k = (G + k) + k
        dims = torch.tensor([n, n_in, n_out, k_basis, n_cells, order, d, p], dtype=torch.int64)
        outs = (x.new_empty(n, n_out), x.new_empty(n, d, n_out), x.new_empty(n, p, n_out))
        fn = getattr(library(), f"kan_jet_forward_{_SUFFIX[x.dtype]}")
        fn(_ptr(dims), *map(_ptr, (x, dh, d2h, m2, coef, wb, t0, h, *outs)), ctypes.c_int(torch.get_num_threads()))
        ctx.save_for_backward(x, dh, d2h, m2, coef, wb, t0, h, dims)
        return outs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gval, ggrad, gsec):
        x, dh, d2h, m2, coef, wb, t0, h, dims = ctx.saved_tensors
        n, n_out = x.shape[0], coef.shape[2]
        gouts = [x.new_zeros(shape) if g is None else g.contiguous()
                 for g, shape in ((gval, (n, n_out)), (ggrad, (n, dh.shape[-1], n_out)), (gsec, (n, d2h.shape[-1], n_out)))]
        grads = [torch.empty_like(t) for t in (x, dh, d2h, m2, coef, wb)]
        fn = getattr(library(), f"kan_jet_backward_{_SUFFIX[x.dtype]}")
        fn(_ptr(dims), *map(_ptr, (x, dh, d2h, m2, coef, wb, t0, h, *gouts, *grads)),
           ctypes.c_int(torch.get_num_threads()))
        return (*grads, None, None, None)


def layer_jet(x: Tensor, dh: Tensor, d2h: Tensor, m2: Tensor, coef: Tensor, base_weight: Tensor,
              knots: Tensor, order: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sums over inputs of every edge function's jet, on uniform knots (bias not included).

    Args:
        x: (N, n_in) layer inputs.
        dh: (N, n_in, d) their gradients.
        d2h: (N, n_in, P) their second-derivative channels.
        m2: (N, n_in, P) dh^T Q_p dh per channel (`kanpde.derivatives.quadratic`).
        coef: (n_in, G+k, n_out) spline coefficients (effective: masked).
        base_weight: (n_in, n_out) silu weights (effective).
        knots: (n_in, G+2k+1) uniform knots.
        order: k, 1..7.

    Returns:
        value (N, n_out) sum_i phi_io; grad (N, d, n_out) sum_i phi'_io dh_ia;
        second (N, P, n_out) sum_i phi'_io d2h_ip + phi''_io m2_ip.
    """
    t0 = knots[:, 0].contiguous()
    h = (knots[:, 1] - knots[:, 0]).contiguous()
    args = [t.contiguous() for t in (x, dh, d2h, m2, coef, base_weight)]
    return _LayerJet.apply(*args, t0, h, order)
