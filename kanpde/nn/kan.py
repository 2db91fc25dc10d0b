"""Kolmogorov-Arnold Network: B-spline edge functions with a SiLU residual (arXiv 2404.19756, sec. 2).

Each edge of a layer carries phi(x) = w_b silu(x) + sum_j c_j B_j(x) (eq. 2.10, with the spline
scale folded into the coefficients); node j sums its incoming edges and adds a bias. A layer
evaluates the bases of all its edges at once and contracts them with one matmul: features
[silu(x_i), B_1(x_i), ..., B_{G+k}(x_i)] per input i, (N, n_in (G+k+1)), times the weights
(n_in (G+k+1), n_out).

On the CPU with uniform knots, `forward` and `jet` run a fused C++ kernel instead
(`kanpde.nn.kernel`: the k + 1 non-zero bases per input only, value and derivatives in one pass,
hand-written backward); the torch code below is the reference it is tested against and the path
everywhere else (CUDA, non-uniform knots, torch.compile, nested autograd).

Derivatives w.r.t. the network input are pushed forward through the same matmul (`jet`): for
y = sum_i phi_i(h_i), dy = sum_i phi_i'(h_i) dh_i and
d2y_p = sum_i phi_i''(h_i) (dh_i^T Q_p dh_i) + phi_i'(h_i) d2h_{i,p}, so value, gradient and
second-derivative channels are stacked along the batch and share one matmul per layer.

Knots are a buffer (they move with `.to()` and live in `state_dict`); the grid-changing
operations (update from samples, extension) are functions in `kanpde.nn.grid`, not methods here.

Interpretability state (sec. 2.5; MultKAN of KAN 2.0, arXiv 2408.10205), used by `kanpde.interpret.prune`,
`kanpde.interpret.sparsity`, `kanpde.interpret.symbolic` and `kanpde.interpret.formula`:
* edge masks, `KANLayer.mask` (n_in, n_out): 1 active, 0 pruned. The mask is multiplied into the
  effective weights (a few (n_in, n_out) ops per layer, exact when it is all ones), so a pruned
  edge gives exactly 0 on every path and its parameters get zero gradient.
* symbolic edges, `KANLayer.fix_symbolic`: edge i -> j computes a f(b x + c) + d instead of its
  spline and base, phi = mask ((1 - sym_mask) phi_spline + sym_mask phi_sym). (a, b, c, d) are
  buffers, not trained.
* multiplication nodes, `KAN(mult=...)`: see `KAN`.
`jet` does not forward-propagate symbolic edges or multiplication nodes: a KAN holding any takes
nested autograd (`kanpde.nn.derivatives.autograd_jet`) instead, correct but slower.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Integral

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kanpde.nn.bspline import (
    basis,
    basis_jet,
    cell_polynomials,
    make_uniform_knots,
    power_jet,
    scatter_local,
    uniform_cells,
    uniform_basis_matrix,
    uniform_local_jet,
)
from kanpde.nn import kernel
from kanpde.nn.derivatives import Jet, autograd_jet, input_jet, quadratic, silu_jet
from kanpde.validate import ConfigError, check_int, check_interval, check_number, check_width

MAX_GRID = 2**20  # intervals per edge; more is a typo (and past 2^63 torch cannot even size the tensors)
IDENTITY = (1.0, 1.0, 0.0, 0.0)  # (a, b, c, d) of a free symbolic slot: a f(b x + c) + d = f(x)


class KANLayer(nn.Module):
    """One KAN layer: n_in x n_out learnable edge functions.

    Args:
        in_dim: number of inputs.
        out_dim: number of outputs.
        grid_size: G, intervals of the spline grid.
        order: k, spline order.
        grid_range: initial grid interval [a, b], the same for every input.
        noise_scale: spline coefficients start uniform in +-noise_scale / 2 (pykan: noise / G).
        base_scale: base weights start uniform in +-base_scale / sqrt(in_dim).
        generator: source of the initial random values (None: torch's default generator).

    Attributes:
        coef: parameter (n_in, G+k, n_out), spline coefficients.
        base_weight: parameter (n_in, n_out), w_b.
        bias: parameter (n_out,).
        knots: buffer (n_in, G+2k+1).
        mask: buffer (n_in, n_out), 1 active edge, 0 pruned.
        sym_mask: buffer (n_in, n_out), 1 where the edge is symbolic (set with `fix_symbolic`).
        sym_params: buffer (n_in, n_out, 4), (a, b, c, d) of each symbolic edge.
        sym_names: n_in lists of n_out `kanpde.nn.functions.LIBRARY` names, "" for a spline edge; it
            decides which edges are evaluated symbolically, and is saved in the state_dict as
            extra state (`get_extra_state`).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        grid_size: int = 5,
        order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        base_scale: float = 1.0,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_dim, self.out_dim, self.order = in_dim, out_dim, order
        lo = torch.full((in_dim,), float(grid_range[0]), dtype=dtype)
        hi = torch.full((in_dim,), float(grid_range[1]), dtype=dtype)
        self.register_buffer("knots", make_uniform_knots(lo, hi, grid_size, order))  # (n_in, G+2k+1)
        # Polynomial form of the local bases; a buffer so it follows .to() (not saved: derived).
        self.register_buffer("poly_matrix", uniform_basis_matrix(order).to(lo.dtype), persistent=False)
        # True while every input's knots are equally spaced: enables the local-basis fast path.
        self.uniform = True
        n_basis = grid_size + order
        coef = (torch.rand(in_dim, n_basis, out_dim, generator=generator, dtype=dtype) - 0.5)
        self.coef = nn.Parameter(coef * noise_scale / grid_size)  # (n_in, G+k, n_out)
        w = torch.rand(in_dim, out_dim, generator=generator, dtype=dtype) * 2 - 1
        self.base_weight = nn.Parameter(w * base_scale / math.sqrt(in_dim))  # (n_in, n_out)
        self.bias = nn.Parameter(torch.zeros(out_dim, dtype=dtype))  # (n_out,)
        self.register_buffer("mask", torch.ones(in_dim, out_dim, dtype=dtype))  # (n_in, n_out)
        self.register_buffer("sym_mask", torch.zeros(in_dim, out_dim, dtype=dtype))  # (n_in, n_out)
        sym = torch.tensor(IDENTITY, dtype=dtype).expand(in_dim, out_dim, 4).clone()
        self.register_buffer("sym_params", sym)  # (n_in, n_out, 4)
        self.sym_names = [[""] * out_dim for _ in range(in_dim)]

    @property
    def grid_size(self) -> int:
        return self.knots.shape[1] - 1 - 2 * self.order

    def _bases(self, x: Tensor, derivatives: int) -> Tensor:
        """Dense bases and their x-derivatives: (1 + derivatives, N, n_in, G+k)."""
        if self.uniform:
            start, local = uniform_local_jet(x, self.knots, self.order, derivatives)
            return scatter_local(start, torch.stack(local), self.coef.shape[1])
        if derivatives == 0:
            return basis(x, self.knots, self.order).unsqueeze(0)
        return torch.stack(basis_jet(x, self.knots, self.order)[: derivatives + 1])

    def _per_edge(self, n_points: int, n_chan: int) -> bool:
        """Whether evaluating each edge's function first moves less data than dense features.

        Per edge: a gathered (N, n_in, k+1, n_out) cell polynomial; dense: (C, N, n_in, G+k+1)
        features. Only on uniform grids, where a point's cell is found by one division.
        """
        per_edge = self.out_dim * (self.order + 1 + n_chan)
        dense = 2 * n_chan * (self.coef.shape[1] + 1)
        return self.uniform and per_edge <= dense

    def _kernel(self, x: Tensor, d: int = 0, p: int = 0) -> bool:
        """Whether to evaluate with the fused CPU kernel (`kanpde.nn.kernel`): uniform knots, and
        inputs (N, n_in) with d gradient and p second channels that it takes."""
        return self.uniform and kernel.usable(x, self.order, d, p)

    @property
    def has_symbolic(self) -> bool:
        """Whether any edge is symbolic (read from `sym_names`: no device sync)."""
        return any(any(row) for row in self.sym_names)

    def effective_weights(self) -> tuple[Tensor, Tensor]:
        """Effective weights: (base weight (n_in, n_out), coefficients (n_in, G+k, n_out)) times
        the mask, and 0 on symbolic edges; equal to the parameters when the mask is all ones."""
        m = self.mask * (1 - self.sym_mask) if self.has_symbolic else self.mask  # (n_in, n_out)
        return self.base_weight * m, self.coef * m.unsqueeze(1)

    def _spline_jet(self, x: Tensor, derivatives: int, base_weight: Tensor, coef: Tensor) -> Tensor:
        """w_b silu + spline of every edge with the given weights: (1 + derivatives, N, n_in, n_out)."""
        silu = torch.stack(silu_jet(x)[: derivatives + 1])  # (R, N, n_in)
        base = silu.unsqueeze(-1) * base_weight  # (R, N, n_in, n_out)
        if self.uniform:
            cell, u, h = uniform_cells(x, self.knots)
            poly = cell_polynomials(coef, self.order, self.poly_matrix)  # (n_in, cells, k+1, n_out)
            rows = cell + torch.arange(self.in_dim, device=x.device) * poly.shape[1]  # (N, n_in)
            gathered = poly.reshape(-1, self.order + 1, self.out_dim)[rows]  # (N, n_in, k+1, n_out)
            powers = power_jet(u, h, self.order, derivatives)  # (R, N, n_in, k+1)
            # Broadcast-and-sum, not einsum: einsum turns this into N n_in tiny matmuls.
            return base + (powers.unsqueeze(-1) * gathered).sum(dim=-2)
        return base + torch.einsum("rnik,iko->rnio", self._bases(x, derivatives), coef)

    def edge_jet(self, x: Tensor, derivatives: int) -> Tensor:
        """Every edge function phi_ij and its derivatives at x_i (masked; pruned edges give 0).

        Args:
            x: (N, n_in).
            derivatives: 0, 1 or 2; must be 0 while the layer has symbolic edges.

        Returns:
            (1 + derivatives, N, n_in, n_out): phi_ij(x_i), phi_ij'(x_i), phi_ij''(x_i).
        """
        out = self._spline_jet(x, derivatives, *self.effective_weights())  # (R, N, n_in, n_out)
        if self.has_symbolic:
            if derivatives:
                raise RuntimeError("KANLayer.edge_jet has no derivatives of symbolic edges; "
                                   "KAN.jet uses nested autograd for such models")
            out = out + self._symbolic(x)
        return out

    def spline(self, x: Tensor) -> Tensor:
        """Spline part of every edge from the raw coefficients, sum_j c_j B_j(x_i), ignoring the
        mask and symbolic slots (what a grid change refits): (N, n_in) -> (N, n_in, n_out)."""
        return torch.einsum("nik,iko->nio", self._bases(x, 0)[0], self.coef)

    def edges(self, x: Tensor) -> Tensor:
        """Every edge function phi_ij(x_i), masked, symbolic edges included: (N, n_in) -> (N, n_in, n_out)."""
        return self.edge_jet(x, 0)[0]

    def _dense(self, x: Tensor, derivatives: int) -> Tensor:
        """Features [silu^(r)(x_i), B_j^(r)(x_i)]: (1 + derivatives, N, n_in, G+k+1)."""
        silu = torch.stack(silu_jet(x)[: derivatives + 1]).unsqueeze(-1)
        return torch.cat([silu, self._bases(x, derivatives)], dim=-1)

    def _weight(self, base_weight: Tensor, coef: Tensor) -> Tensor:
        """(n_in (G+k+1), n_out): rows [w_b, c_1 .. c_{G+k}] per input, matching `_dense`."""
        return torch.cat([base_weight.unsqueeze(1), coef], dim=1).reshape(-1, self.out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """(N, n_in) -> (N, n_out)."""
        base_weight, coef = self.effective_weights()
        if self._kernel(x):
            empty = x.new_zeros(x.shape[0], self.in_dim, 0)
            y = kernel.layer_jet(x, empty, empty, empty, coef, base_weight, self.knots, self.order)[0]
        elif self._per_edge(x.shape[0], 1):
            y = self._spline_jet(x, 0, base_weight, coef)[0].sum(dim=1)  # (N, n_out)
        else:
            y = self._dense(x, 0)[0].reshape(x.shape[0], -1) @ self._weight(base_weight, coef)
        if self.has_symbolic:
            y = y + self._symbolic(x).sum(dim=1)
        return y + self.bias

    def jet(self, h: Jet) -> Jet:
        """Push a jet of this layer's inputs through it.

        With y_o = sum_i phi_io(h_i): dy_o/dx_a = sum_i phi_io' dh_ia and
        d2y_op = sum_i phi_io'' (dh_i^T Q_p dh_i) + phi_io' d2h_ip.

        Args:
            h: jet with value (N, n_in), grad (N, n_in, d), second (N, n_in, P).

        Returns:
            jet with value (N, n_out), grad (N, n_out, d), second (N, n_out, P).

        Raises:
            RuntimeError: the layer has symbolic edges (`KAN.jet` then uses autograd).
        """
        if self.has_symbolic:
            raise RuntimeError("KANLayer.jet does not propagate symbolic edges; KAN.jet uses nested autograd")
        base_weight, coef = self.effective_weights()
        x = h.value
        n, d, p = x.shape[0], h.grad.shape[-1], h.second.shape[-1]
        if self._kernel(x, d, p):  # fused CPU kernel: the same sums in one pass, m2 formed inside
            value, grad, second = kernel.layer_jet(x, h.grad, h.second, h.mode, coef,
                                                   base_weight, self.knots, self.order)
            return Jet(value + self.bias, grad, second, h.mode)
        if p:  # multiplier of phi'' per input and channel: (N, n_in, P)
            m2 = quadratic(h.grad, h.mode)
        if self._per_edge(n, 1 + d + p):
            e = self._spline_jet(x, 2 if p else 1, base_weight, coef)  # (R, N, n_in, n_out)
            value = e[0].sum(dim=1) + self.bias
            grad = (e[1].unsqueeze(-1) * h.grad.unsqueeze(2)).sum(dim=1)  # (N, n_out, d)
            if not p:
                return Jet(value, grad, grad.new_zeros(n, self.out_dim, 0), h.mode)
            second = (e[1].unsqueeze(-1) * h.second.unsqueeze(2) + e[2].unsqueeze(-1) * m2.unsqueeze(2)).sum(dim=1)
            return Jet(value, grad, second, h.mode)
        f = self._dense(x, 2 if p else 1)  # (R, N, n_in, K1)
        m1 = torch.cat([h.grad, h.second], dim=-1).permute(2, 0, 1).unsqueeze(-1)  # (d + P, N, n_in, 1)
        chans = [f[0].unsqueeze(0), f[1].unsqueeze(0) * m1]
        if p:
            chans[1][d:] += f[2].unsqueeze(0) * m2.permute(2, 0, 1).unsqueeze(-1)
        feats = torch.cat(chans)  # (1 + d + P, N, n_in, K1)
        out = (feats.reshape((1 + d + p) * n, -1) @ self._weight(base_weight, coef)).reshape(1 + d + p, n, self.out_dim)
        return Jet(out[0] + self.bias, out[1 : 1 + d].permute(1, 2, 0), out[1 + d :].permute(1, 2, 0), h.mode)

    def _symbolic(self, x: Tensor) -> Tensor:
        """Symbolic part of every edge, mask sym_mask (a f(b x_i + c) + d) where `sym_names` names
        an f, else 0: (N, n_in) -> (N, n_in, n_out)."""
        from kanpde.nn.functions import LIBRARY  # lazy: it imports sympy and scipy

        groups: dict[str, list[tuple[int, int]]] = {}
        for i, row in enumerate(self.sym_names):
            for j, name in enumerate(row):
                if name:
                    groups.setdefault(name, []).append((i, j))
        out = x.new_zeros(x.shape[0], self.in_dim, self.out_dim)
        for name, edges in groups.items():
            ii, jj = torch.tensor(edges, device=x.device).T  # (E,), (E,)
            a, b, c, d = self.sym_params[ii, jj].unbind(-1)  # (E,) each
            value = a * LIBRARY[name].torch(b * x[:, ii] + c) + d  # (N, E)
            out[:, ii, jj] = value * (self.mask[ii, jj] * self.sym_mask[ii, jj])
        return out

    def _edge_index(self, i: int, j: int) -> tuple[int, int]:
        return (check_int(i, "edge input i", minimum=0, maximum=self.in_dim - 1),
                check_int(j, "edge output j", minimum=0, maximum=self.out_dim - 1))

    def fix_symbolic(self, i: int, j: int, name: str, params: Sequence[float] = IDENTITY) -> None:
        """Make edge i -> j compute a f(b x + c) + d, f = `kanpde.nn.functions.LIBRARY[name].torch`, in place.

        The symbolic value replaces the edge's spline and base; it is still multiplied by the
        edge mask. a, b, c, d are buffers (`sym_params`): training does not change them.

        Args:
            i: input index in [0, n_in).
            j: output index in [0, n_out).
            name: a LIBRARY key, e.g. "sin", "x^2"; an unknown one raises ConfigError.
            params: (a, b, c, d), four finite numbers.
        """
        from kanpde.nn.functions import LIBRARY

        i, j = self._edge_index(i, j)
        if not isinstance(name, str) or name not in LIBRARY:
            raise ConfigError(f"symbolic function {name!r} is not known; allowed: {', '.join(LIBRARY)}")
        try:
            values = [float(v) for v in params]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"symbolic params must be four finite numbers (a, b, c, d), got {params!r}")
        with torch.no_grad():
            self.sym_params[i, j] = torch.tensor(values, dtype=self.sym_params.dtype, device=self.sym_params.device)
            self.sym_mask[i, j] = 1.0
        self.sym_names[i][j] = name

    def unfix_symbolic(self, i: int, j: int) -> None:
        """Return edge i -> j to its spline (and base), in place; its (a, b, c, d) reset to identity."""
        i, j = self._edge_index(i, j)
        with torch.no_grad():
            self.sym_params[i, j] = torch.tensor(IDENTITY, dtype=self.sym_params.dtype, device=self.sym_params.device)
            self.sym_mask[i, j] = 0.0
        self.sym_names[i][j] = ""

    def get_extra_state(self) -> Tensor:
        """`sym_names` as UTF-8 JSON bytes, (n_bytes,) uint8: a tensor, so the state_dict stays all
        tensors (run records write it as a dataset; clones and comparisons keep working)."""
        return torch.tensor(list(json.dumps(self.sym_names).encode()), dtype=torch.uint8)

    def set_extra_state(self, state: Tensor | list) -> None:
        """Restore `sym_names` from `get_extra_state`'s bytes (or the list itself)."""
        names = json.loads(bytes(state.tolist()).decode()) if isinstance(state, Tensor) else state
        if len(names) != self.in_dim or any(len(row) != self.out_dim for row in names):
            raise ConfigError(f"sym_names must be {self.in_dim} lists of {self.out_dim} names, got {names!r}")
        self.sym_names = [[str(n) for n in row] for row in names]


@dataclass
class KANConfig:
    """Constructor arguments of a KAN; config keys are these names."""

    width: list[int] = field(default_factory=lambda: [2, 10, 1])
    grid: int = 5
    order: int = 3
    grid_range: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    noise_scale: float = 0.1
    base_scale: float = 1.0
    mult: list[int] | None = None
    symbolic: dict[str, str | list] | None = None


_EDGE_KEY = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*$")


def edge_key(key, layers: Sequence[KANLayer], what: str) -> tuple[int, int, int]:
    """(l, i, j) from an edge key "l,i,j" (edge i -> j of layer l); ConfigError naming `what` if
    it is malformed or names no edge of `layers`."""
    m = _EDGE_KEY.match(str(key))
    if not m:
        raise ConfigError(f"{what} key must be 'layer,i,j', got {key!r}")
    l, i, j = map(int, m.groups())
    if l >= len(layers) or i >= layers[l].in_dim or j >= layers[l].out_dim:
        raise ConfigError(f"{what} {key!r} names no edge of this KAN")
    return l, i, j


def check_mult(mult, width: list[int]) -> list[int] | None:
    """Multiplication-node counts: None, or one integer per entry of width, 0 at both ends and
    mult[l] <= width[l]; else ConfigError."""
    if mult is None:
        return None
    is_list = isinstance(mult, Sequence) and not isinstance(mult, (str, bytes))
    shown = list(mult) if is_list else mult
    if not (is_list and len(mult) == len(width)
            and all(isinstance(m, Integral) and not isinstance(m, bool) and m >= 0 for m in mult)):
        raise ConfigError(f"model.mult must be null or {len(width)} non-negative integers, one per width "
                          f"entry, got {shown!r}")
    if mult[0] or mult[-1]:
        raise ConfigError(f"model.mult must be 0 for the input and output layers, got {shown!r}")
    for l, (m, w) in enumerate(zip(mult, width)):
        if m > w:
            raise ConfigError(f"model.mult[{l}] must be at most width[{l}] = {w}, got {m}")
    return [int(m) for m in mult]


class KAN(nn.Module):
    """A stack of KAN layers of widths `width` (e.g. [2, 10, 1]), optionally with multiplication
    nodes (KAN 2.0's MultKAN).

    `mult[l]` of the width[l] nodes of node layer l multiply instead of summing (0 for the input
    and output layers; None: no multiplication nodes). Layer l - 1 then has width[l] + mult[l]
    outputs ("subnodes"), in this order: the n_sum = width[l] - mult[l] sum nodes first (node j
    is subnode j), then two factors per multiplication node, node n_sum + k being
    subnode[n_sum + 2k] * subnode[n_sum + 2k + 1] (each subnode includes its bias). `combine`
    maps subnodes to nodes. Symbolic edges or multiplication nodes make `jet` use autograd.

    `symbolic` = {"l,i,j": name} fixes those edges to the library function f(x) = name from the
    start (a, b, c, d = 1, 1, 0, 0; not trained), {"l,i,j": [name, a, b, c, d]} to
    a f(b x + c) + d: a config-level hint, like the paper's manual mode (sec. 4.4), that leaves
    the other edges to learn around it.

    Args: see `KANConfig`; `generator` seeds the initial parameters, `dtype` their precision.
    """

    def __init__(
        self,
        width: list[int] = (2, 10, 1),
        grid: int = 5,
        order: int = 3,
        grid_range: list[float] = (-1.0, 1.0),
        noise_scale: float = 0.1,
        base_scale: float = 1.0,
        mult: list[int] | None = None,
        symbolic: dict[str, str | list] | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        width = check_width(width, "model.width")
        grid = check_int(grid, "model.grid", minimum=1, maximum=MAX_GRID)
        order = check_int(order, "model.order", minimum=1, maximum=7)
        grid_range = check_interval(grid_range, "model.grid_range")
        if not all(math.isfinite(v) for v in grid_range):
            raise ConfigError(f"model.grid_range must be finite, got {list(grid_range)!r}")
        noise_scale = check_number(noise_scale, "model.noise_scale", minimum=0.0, finite=True)
        base_scale = check_number(base_scale, "model.base_scale", minimum=0.0, finite=True)
        mult = check_mult(mult, width)
        if symbolic is not None and not isinstance(symbolic, Mapping):
            raise ConfigError(f"model.symbolic must be null or a mapping {{'layer,i,j': function}}, got {symbolic!r}")
        for key, spec in (symbolic or {}).items():
            if not isinstance(spec, (str, Sequence)) or isinstance(spec, bytes):
                raise ConfigError(f"model.symbolic[{key!r}] must be a function name or [name, a, b, c, d], "
                                  f"got {spec!r}")
        symbolic = None if symbolic is None else {
            str(k): str(v) if isinstance(v, str) else list(v) for k, v in symbolic.items()}
        self.config = KANConfig(list(width), grid, order, [float(v) for v in grid_range],
                                float(noise_scale), float(base_scale), mult, symbolic)
        outs = [w + self._mult(l + 1) for l, w in enumerate(width[1:])]  # subnodes per layer
        self.layers = nn.ModuleList(
            KANLayer(a, b, grid, order, tuple(grid_range), noise_scale, base_scale, generator, dtype)
            for a, b in zip(width[:-1], outs)
        )
        for key, spec in (symbolic or {}).items():
            l, i, j = edge_key(key, self.layers, "model.symbolic")
            name, params = (spec, IDENTITY) if isinstance(spec, str) else (spec[0] if spec else "", spec[1:])
            self.layers[l].fix_symbolic(i, j, name, params)

    def _mult(self, node_layer: int) -> int:
        return 0 if self.config.mult is None else self.config.mult[node_layer]

    def combine(self, l: int, y: Tensor) -> Tensor:
        """Node values of node layer l + 1 from layer l's raw output (bias included).

        Args:
            l: layer index, 0 <= l < len(layers).
            y: (N, width[l+1] + mult[l+1]) subnodes, ordered as in the class docstring.

        Returns:
            (N, width[l+1]): the sum nodes, then the products of subnode pairs (y itself when
            node layer l + 1 has no multiplication nodes).
        """
        k = self._mult(l + 1)
        if not k:
            return y
        n_sum = y.shape[-1] - 2 * k
        return torch.cat([y[..., :n_sum], y[..., n_sum::2] * y[..., n_sum + 1 :: 2]], dim=-1)

    def subnode_owner(self, l: int) -> list[int]:
        """For each output (subnode) of layer l, the node of node layer l + 1 it feeds:
        width[l+1] + mult[l+1] indices, [0, .., n_sum - 1, n_sum, n_sum, n_sum + 1, n_sum + 1, ..]."""
        k = self._mult(l + 1)
        n_sum = self.config.width[l + 1] - k
        return list(range(n_sum)) + [n_sum + s // 2 for s in range(2 * k)]

    @property
    def fast_jet(self) -> bool:
        """Whether `jet` forward-propagates: no multiplication nodes and no symbolic edges."""
        return not any(self.config.mult or ()) and not any(layer.has_symbolic for layer in self.layers)

    def forward(self, x: Tensor) -> Tensor:
        """(N, width[0]) -> (N, width[-1])."""
        for l, layer in enumerate(self.layers):
            x = self.combine(l, layer(x))  # (N, width[l+1])
        return x

    def jet(self, x: Tensor, mode: str = "laplacian") -> Jet:
        """Value, input gradient and second derivatives in one forward pass.

        A model with multiplication nodes or symbolic edges (`fast_jet` false) computes them by
        nested autograd (`kanpde.nn.derivatives.autograd_jet`) instead: same result, slower.

        Args:
            x: (N, d) points.
            mode: second-derivative layout, see `kanpde.nn.derivatives`.

        Returns:
            Jet with value (N, m), grad (N, m, d), second (N, m, P).
        """
        if not self.fast_jet:
            with torch.enable_grad():  # so that it also works where the caller disabled autograd
                return autograd_jet(self, x, mode)
        return self.push(input_jet(x, mode))

    def push(self, h: Jet) -> Jet:
        """Push a jet of the network's inputs through it (the chain rule through a map in front,
        e.g. a problem's input scaling; only when `fast_jet`).

        Args:
            h: jet with value (N, width[0]), grad (N, width[0], d), second (N, width[0], P).

        Returns:
            Jet with value (N, m), grad (N, m, d), second (N, m, P).
        """
        for layer in self.layers:
            h = layer.jet(h)
        return h

    def constructor_args(self) -> dict:
        """Arguments that rebuild this model's shapes (the grid size tracks extensions)."""
        args = asdict(self.config)
        args["grid"] = self.layers[0].grid_size
        return args
