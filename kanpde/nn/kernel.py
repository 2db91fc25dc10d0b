"""A fused CPU kernel for a KAN layer's jet on a uniform grid (value, gradient and second
derivatives pushed forward, and the backward of all of it), built from `csrc/kan_jet.cpp`.

Why: in torch ops the jet of a layer is dozens of small memory-bound passes over (N, n_in, G+k)
or (N, n_in, n_out) temporaries, and its dense form multiplies by the G + k - (k + 1) bases that
are zero at every point. The kernel visits each (point, input) once, touches only the k + 1
non-zero bases of its cell, and keeps the temporaries in registers and L1.

The source is compiled on first use with the system C++ compiler (`c++ -O3 -march=native
-fopenmp` and a few other flag sets, in parallel, about 20 s; the fastest on this CPU is kept,
`kanpde.nn.tuning`) into a cache folder (`$KANPDE_CACHE`, else `~/.cache/kanpde`), keyed by the
source, the compiler, the flags and the instruction set `-march=native` resolves to, and loaded
with ctypes (`kanpde.nn.build`; `build_info()` says what was loaded); no torch headers are needed.
Where it cannot be used (no compiler, CUDA tensors, non-uniform knots, other dtypes than
float32/64, inside torch.compile or a torch.func transform, with `KANPDE_KERNEL=0` or the run
setting `kernel: false`), `KANLayer` uses its torch path: same results.

The C++ backward is first order. A backward that builds a graph (`create_graph=True`: a
derivative of the model taken by autograd and then differentiated again, as a Neumann loss or
`kanpde.nn.derivatives.autograd_jet` do) instead differentiates `torch_layer_jet`, the same sums in
torch ops, so derivatives of any order through the kernel are exact. Forward-mode AD
(`torch.autograd.forward_ad`) is not supported: it raises; run it under `switched(False)`."""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from kanpde.nn import build, tuning
from kanpde.nn.bspline import cell_polynomials, power_jet

log = logging.getLogger(__name__)

SUFFIX = {torch.float64: "f64", torch.float32: "f32"}

_lib: ctypes.CDLL | None = None
_info: dict = {}
_tried = False
enabled = os.environ.get("KANPDE_KERNEL", "1") != "0"  # see `switched`


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """Within the block, use the kernel only if `on` (and usable)."""
    global enabled
    old, enabled = enabled, bool(on)
    try:
        yield
    finally:
        enabled = old


def library() -> ctypes.CDLL | None:
    """The loaded kernel, building it on the first call; None if it cannot be built."""
    global _lib, _info, _tried
    if not _tried:
        _tried = True
        try:
            _lib, _info = tuning.build_chosen()
            _info = {"available": True, **_info, "error": None}
        except Exception as exc:  # no compiler, no writable cache, no home folder...: torch path
            detail = getattr(exc, "stderr", "") or str(exc)
            reason = detail.strip().splitlines()[-1] if detail.strip() else type(exc).__name__
            log.warning("kanpde: C++ kernel not available (%s); using the torch path", reason)
            _info = {"available": False, "error": reason, "cpu_model": build.cpu()["model"]}
    return _lib


@contextmanager
def using(lib: ctypes.CDLL, info: dict) -> Iterator[None]:
    """Within the block, run the kernel from `lib` (another build, for side-by-side timing)."""
    global _lib, _info
    library()
    old = _lib, _info
    _lib, _info = lib, {"available": True, **info, "error": None}
    try:
        yield
    finally:
        _lib, _info = old


def build_info() -> dict:
    """What `library()` loaded (building it if no call has yet), for run records and benchmarks.

    Returns:
        {"available": bool, "error": None or why not, and when the probes ran: "path" (the cached
        library), "compiled" (whether this process compiled it), "build" (the candidate flag set)
        and "choice" (how it was chosen, the timings: `kanpde.nn.tuning.choose`), "key", "compiler",
        "compiler_version", "flags", "march" and "mtune" (what -march=native resolved to),
        "isa" (the resolved target options), "cpu_model", ... (see `kanpde.nn.build.describe`)}.
    """
    library()
    return dict(_info)


MAX_ORDER, MAX_D, MAX_P = 7, 16, 136  # the kernel's fixed-size local arrays (csrc/kan_jet.cpp)


def usable(x: Tensor, order: int, d: int = 0, p: int = 0) -> bool:
    """Whether a layer's jet at inputs x (order k, d gradient and p second-derivative channels)
    can take the kernel; the caller checks that the knots are uniform."""
    if not enabled or x.device.type != "cpu" or x.dtype not in SUFFIX:
        return False
    if not (1 <= order <= MAX_ORDER and d <= MAX_D and p <= MAX_P):
        return False
    if getattr(torch.compiler, "is_compiling", lambda: False)():  # traced: let dynamo see torch ops
        return False
    if under_functorch():
        return False
    return library() is not None


def under_functorch() -> bool:
    """Whether a torch.func transform (grad, jacrev, vmap, ...) is active.

    Its tensors are wrappers whose data_ptr the C++ kernel cannot read, so the torch path must
    run. Should this private probe vanish from torch, `_LayerJet` (an old-style autograd Function,
    on purpose) still refuses such transforms with an error instead of a wrong value.
    """
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


_typed: dict[tuple[ctypes.CDLL, str], object] = {}  # (library, entry point): the typed function
_dims: dict[tuple[int, ...], Tensor] = {}  # a layer call's sizes: the int64 tensor the kernel reads


def call(name: str, *tensors: Tensor) -> None:
    """Run the kernel's entry point `name` on the tensors' data and torch's thread count: every
    argument a pointer but the last (an int). Its ctypes argument types are set on first use, so
    a call passes the data pointers as plain ints (a few microseconds less per layer call than
    wrapping each in a c_void_p)."""
    lib = library()
    fn = _typed.get((lib, name))
    if fn is None:
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * len(tensors) + [ctypes.c_int]
        _typed[(lib, name)] = fn
    fn(*[t.data_ptr() for t in tensors], torch.get_num_threads())


def dims_tensor(*sizes: int) -> Tensor:
    """The sizes as a (len(sizes),) int64 tensor, made once per distinct sizes (a few dozen in a
    run: one per layer, point set and grid). Read-only: the kernel only reads it."""
    t = _dims.get(sizes)
    if t is None:
        if len(_dims) > 4096:  # a long sweep in one process: start over rather than grow
            _dims.clear()
        t = _dims[sizes] = torch.tensor(sizes, dtype=torch.int64)
    return t


class _LayerJet(torch.autograd.Function):
    """(value, grad, second) from x, dh, d2h, m2, coef, wb; see `layer_jet`.

    Old-style (forward takes ctx, no setup_context) on purpose: torch.func then refuses it
    loudly rather than handing wrapped tensors to ctypes.
    """

    @staticmethod
    def forward(ctx, x, dh, d2h, m2, coef, wb, t0, h, order, mode):
        n, n_in = x.shape
        d, p = dh.shape[-1], d2h.shape[-1]
        n_out, k_basis = coef.shape[2], coef.shape[1]
        n_cells = k_basis + order  # cells of the knot span: G + 2k = (G + k) + k
        code = _MODES[mode]
        dims = dims_tensor(n, n_in, n_out, k_basis, n_cells, order, d, p, code)
        outs = (x.new_empty(n, n_out), x.new_empty(n, n_out, d), x.new_empty(n, n_out, p))
        call(f"kan_jet_forward_{SUFFIX[x.dtype]}", dims, x, dh, d2h, m2, coef, wb, t0, h, *outs)  # m2 read only if given
        ctx.save_for_backward(x, dh, d2h, m2, coef, wb, t0, h, dims)
        ctx.order, ctx.mode = order, mode
        return outs

    @staticmethod
    def backward(ctx, gval, ggrad, gsec):
        x, dh, d2h, m2, coef, wb, t0, h, dims = ctx.saved_tensors
        inputs = (x, dh, d2h, m2, coef, wb)
        n, n_out = x.shape[0], coef.shape[2]
        gouts = [x.new_zeros(shape) if g is None else g.contiguous()
                 for g, shape in ((gval, (n, n_out)), (ggrad, (n, n_out, dh.shape[-1])), (gsec, (n, n_out, d2h.shape[-1])))]
        # Grad mode is on inside backward exactly under create_graph=True; the result then has to
        # be differentiable, which the C++ backward is not.
        if torch.is_grad_enabled():
            return (*_torch_vjp(inputs, gouts, t0, h, ctx.order, ctx.mode, ctx.needs_input_grad), None, None, None, None)
        grads = [torch.empty_like(t) for t in inputs]  # m2's is written only if m2 was given
        call(f"kan_jet_backward_{SUFFIX[x.dtype]}", dims, x, dh, d2h, m2, coef, wb, t0, h, *gouts, *grads)
        return (*grads[:3], grads[3] if ctx.mode == GIVEN else None, *grads[4:], None, None, None, None)


GIVEN = "given"  # m2 passed in; otherwise formed from dh by the second-derivative mode
_MODES = {GIVEN: 0, "laplacian": 1, "diag": 2, "full": 3, "none": 1}  # none: P = 0, nothing formed


def _torch_vjp(inputs: tuple[Tensor, ...], gouts: list[Tensor], t0: Tensor, h: Tensor, order: int,
               mode: str, needed: tuple[bool, ...]) -> list[Tensor | None]:
    """The kernel's vector-Jacobian product as a differentiable graph, from `torch_layer_jet`.

    Args:
        inputs: (x, dh, d2h, m2, coef, wb), shapes as in `layer_jet` (m2 a placeholder unless
            mode is GIVEN).
        gouts: gradients of (value (N, n_out), grad (N, n_out, d), second (N, n_out, P)).
        t0, h: (n_in,) first knot and spacing.
        order: k.
        mode: GIVEN or the second-derivative mode m2 is formed by.
        needed: `ctx.needs_input_grad`, whose first six entries match `inputs`.

    Returns:
        gradients shaped like `inputs` (None where not needed), differentiable w.r.t. the inputs
        and `gouts`.
    """
    wanted = [t for t, need in zip(inputs, needed) if need]
    with torch.enable_grad():
        x, dh, d2h, m2, coef, wb = inputs
        if mode != GIVEN:
            m2 = _quadratic(dh, mode)
        outs = torch_layer_jet(x, dh, d2h, m2, coef, wb, t0, h, order)
        # An output none of `wanted` feeds (value when only dh needs a gradient) has no graph.
        live = [(o, g) for o, g in zip(outs, gouts) if o.requires_grad]
        grads = iter(torch.autograd.grad([o for o, _ in live], wanted, [g for _, g in live],
                                         create_graph=True, allow_unused=True))
    # allow_unused: e.g. with P = 0 nothing depends on d2h or m2; their gradient is then zero.
    return [None if not need else _or_zeros(next(grads), t) for t, need in zip(inputs, needed)]


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _quadratic(dh: Tensor, mode: str) -> Tensor:
    """m2 = dh^T Q_p dh of a second-derivative mode (`derivatives.quadratic`): (N, n_in, P)."""
    from kanpde.nn.derivatives import quadratic  # lazy: derivatives imports this module

    return quadratic(dh, mode)


def torch_layer_jet(x: Tensor, dh: Tensor, d2h: Tensor, m2: Tensor, coef: Tensor, base_weight: Tensor,
                    t0: Tensor, h: Tensor, order: int) -> tuple[Tensor, Tensor, Tensor]:
    """What the C++ kernel computes, in differentiable torch ops (derivatives of every order).

    Edge function phi_io = w_io silu(x_i) + spline_io(x_i), the spline of order k on the uniform
    knots t0_i + j h_i, zero outside the knot span. A point's cell is floor((x - t0) / h), as in
    the kernel (not from rebuilt knots, whose differences could round away from h).

    Args:
        x: (N, n_in) layer inputs.
        dh: (N, n_in, d) their gradients.
        d2h: (N, n_in, P) their second-derivative channels.
        m2: (N, n_in, P) dh^T Q_p dh per channel.
        coef: (n_in, G+k, n_out) spline coefficients.
        base_weight: (n_in, n_out) silu weights.
        t0: (n_in,) first knot.
        h: (n_in,) knot spacing.
        order: k, >= 1.

    Returns:
        value (N, n_out) sum_i phi_io; grad (N, n_out, d) sum_i phi'_io dh_ia;
        second (N, n_out, P) sum_i phi'_io d2h_ip + phi''_io m2_ip.
    """
    n, d, p, n_out = x.shape[0], dh.shape[-1], d2h.shape[-1], coef.shape[2]
    # Only the derivatives some channel uses: the plain forward (d = P = 0) needs none, and each
    # one more makes the double backward of nested autograd dearer.
    phi = _edge_jet(x, coef, base_weight, t0, h, order, 2 if p else 1 if d else 0)  # (R, N, n_in, n_out)
    value = phi[0].sum(dim=1)
    grad = torch.einsum("nio,nia->noa", phi[1], dh) if d else x.new_zeros(n, n_out, 0)
    if not p:
        return value, grad, x.new_zeros(n, n_out, 0)
    second = torch.einsum("nio,nip->nop", phi[1], d2h) + torch.einsum("nio,nip->nop", phi[2], m2)
    return value, grad, second


def _edge_jet(x: Tensor, coef: Tensor, base_weight: Tensor, t0: Tensor, h: Tensor, order: int,
              derivatives: int) -> Tensor:
    """phi_io(x_i) and its first `derivatives` (0..2) derivatives for every edge:
    (1 + derivatives, N, n_in, n_out)."""
    from kanpde.nn.derivatives import silu_jet  # lazy: derivatives imports this module

    n_cells = coef.shape[1] + order  # G + 2k
    s = (x - t0) / h  # (N, n_in)
    cell = torch.floor(s).clamp(-1, n_cells)  # -1: left of the span, n_cells: right of it
    poly = cell_polynomials(coef, order)  # (n_in, G+2k+2, k+1, n_out); rows 0 and G+2k+1 zero
    rows = (cell + 1).long() + torch.arange(x.shape[1], device=x.device) * poly.shape[1]  # (N, n_in)
    gathered = poly.reshape(-1, order + 1, coef.shape[2])[rows]  # (N, n_in, k+1, n_out)
    powers = power_jet(s - cell, h, order, derivatives)  # (R, N, n_in, k+1)
    spline = (powers.unsqueeze(-1) * gathered).sum(dim=-2)  # (R, N, n_in, n_out)
    silu = torch.stack(silu_jet(x)[: derivatives + 1])  # (R, N, n_in)
    return silu.unsqueeze(-1) * base_weight + spline


def layer_jet(x: Tensor, dh: Tensor, d2h: Tensor, m2: Tensor | str, coef: Tensor, base_weight: Tensor,
              knots: Tensor, order: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sums over inputs of every edge function's jet, on uniform knots (bias not included).

    By the C++ kernel, differentiable to any order (see the module docstring); inside a
    torch.func transform by `torch_layer_jet`.

    Args:
        x: (N, n_in) layer inputs.
        dh: (N, n_in, d) their gradients.
        d2h: (N, n_in, P) their second-derivative channels.
        m2: (N, n_in, P) dh^T Q_p dh per channel (`kanpde.nn.derivatives.quadratic`), or the
            second-derivative mode ("laplacian", "diag", "full", "none") to form it from dh
            inside the kernel, saving the torch ops of forming it and of its backward.
        coef: (n_in, G+k, n_out) spline coefficients (effective: masked).
        base_weight: (n_in, n_out) silu weights (effective).
        knots: (n_in, G+2k+1) uniform knots.
        order: k, 1..7.

    Returns:
        value (N, n_out) sum_i phi_io; grad (N, n_out, d) sum_i phi'_io dh_ia;
        second (N, n_out, P) sum_i phi'_io d2h_ip + phi''_io m2_ip.
    """
    t0 = knots[:, 0].contiguous()
    h = (knots[:, 1] - knots[:, 0]).contiguous()
    mode, m2 = (m2, d2h.new_empty(0)) if isinstance(m2, str) else (GIVEN, m2)
    if mode not in _MODES:
        raise ValueError(f"second-derivative mode {mode!r} is not one of {tuple(_MODES)[1:]}")
    d, p = dh.shape[-1], d2h.shape[-1]
    if mode != GIVEN and p != {"none": 0, "laplacian": 1, "diag": d, "full": d * (d + 1) // 2}[mode]:
        raise ValueError(f"{p} second-derivative channels do not match mode {mode!r} with d = {d}")
    if under_functorch():
        return torch_layer_jet(x, dh, d2h, m2 if mode == GIVEN else _quadratic(dh, mode), coef, base_weight, t0, h, order)
    args = [t.contiguous() for t in (x, dh, d2h, m2, coef, base_weight)]
    return _LayerJet.apply(*args, t0, h, order, mode)
