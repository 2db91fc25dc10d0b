"""A fully symbolic KAN as one sympy formula (arXiv 2404.19756, sec. 2.5.1, step 3 of Fig. 2.4).

Every active edge of the network must be symbolic (`layer.fix_symbolic`, e.g. by
`kanpde.interpret.symbolic.auto_symbolic`): edge i -> j of layer l is a f(b h_i + c) + d. Node j sums its
incoming edges and adds the layer's bias; pruned edges (mask 0) contribute nothing; a
multiplication node multiplies its two subnodes (see `KAN.combine`). `formula` composes the
layers; `round_formula` and `prune_terms` tidy the result, e.g. 3.02 alpha E + 6.01 lambda +
0.004 E^2 - 6.0 to alpha E + 2 lambda - 2 after dividing by the leading coefficient.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import sympy as sp
from torch import nn

from kanpde.interpret.symbolic import LIBRARY, node_counts
from kanpde.validate import ConfigError, check_int, check_number


def _first_spline_edge(model: nn.Module) -> tuple[int, int, int] | None:
    for l, layer in enumerate(model.layers):
        spline = (layer.mask != 0) & (layer.sym_mask == 0)  # (n_in, n_out)
        if spline.any():
            i, j = (int(v) for v in spline.nonzero()[0])
            return l, i, j
    return None


def _expand(expr: sp.Expr) -> sp.Expr:
    """Multiply out sums and products, inside function arguments too, but keep exp(a + b) and
    log(a b) whole."""
    return sp.expand(expr, power_exp=False, power_base=False, log=False, deep=True)


def formula(model: nn.Module, inputs: Sequence[str] | None = None, digits: int | None = None,
            output: int = 0, expand: bool = True) -> sp.Expr:
    """The network's output `output` as a sympy expression of its inputs.

    Args:
        model: a KAN whose active edges are all symbolic.
        inputs: names of the width[0] inputs (default x1, x2, ...).
        digits: round every number to this many decimal places (`round_formula`); None keeps
            float64 values.
        output: which output node.
        expand: multiply out products and sums (`sympy.expand`, keeping exp and log arguments).

    Returns:
        the formula; sympy.lambdify of it reproduces model(x)[:, output] in float64.
    """
    width = model.config.width
    inputs = tuple(f"x{k + 1}" for k in range(width[0])) if inputs is None else tuple(inputs)
    if len(inputs) != width[0] or not all(isinstance(n, str) and n for n in inputs):
        raise ConfigError(f"inputs must be {width[0]} names, one per network input, got {inputs!r}")
    check_int(output, "output", minimum=0, maximum=width[-1] - 1)
    spline = _first_spline_edge(model)
    if spline is not None:
        l, i, j = spline
        raise ConfigError(f"edge {l},{i},{j} (layer {l}, input {i} -> output {j}) is still a spline; "
                          "fix every active edge symbolically first (kanpde.interpret.symbolic.auto_symbolic)")
    h: list[sp.Expr] = [sp.Symbol(n) for n in inputs]
    for l, layer in enumerate(model.layers):
        mask = layer.mask.detach().cpu().numpy()  # (n_in, n_out)
        params = layer.sym_params.detach().cpu().double().numpy()  # (n_in, n_out, 4)
        bias = layer.bias.detach().cpu().double().numpy()  # (n_out,)
        raw = []
        for j in range(layer.out_dim):
            terms = [sp.Float(float(bias[j]))]
            for i in range(layer.in_dim):
                if mask[i, j] == 0:
                    continue
                a, b, c, d = (sp.Float(float(v)) for v in params[i, j])
                terms.append(a * LIBRARY[layer.sym_names[i][j]].sympy(b * h[i] + c) + d)
            raw.append(sp.Add(*terms))
        n_sum, n_mult = node_counts(model, l)
        h = raw[:n_sum] + [raw[n_sum + 2 * k] * raw[n_sum + 2 * k + 1] for k in range(n_mult)]
    expr = _expand(h[output]) if expand else h[output]
    return expr if digits is None else round_formula(expr, digits)


def round_formula(expr: sp.Expr, digits: int) -> sp.Expr:
    """Every number in `expr` rounded to `digits` decimal places; whole numbers become integers
    (so 1.0000001 x -> x and 2.9999 lambda -> 3 lambda at digits <= 3) and 0 terms vanish."""
    check_int(digits, "digits", minimum=0)
    repl = {}
    for f in expr.atoms(sp.Float):
        r = round(float(f), digits)
        repl[f] = sp.Integer(int(r)) if r == int(r) else sp.Float(repr(r), "")
    return expr.xreplace(repl)


def to_function(expr: sp.Expr, inputs: Sequence[str]) -> Callable[[np.ndarray], np.ndarray]:
    """A numpy function of the formula via sympy.lambdify.

    Args:
        expr: the formula.
        inputs: the names of the input columns, in order.

    Returns:
        f(x) with x (N, len(inputs)) -> (N,) float64.
    """
    inputs = tuple(inputs)
    unknown = sorted(s.name for s in expr.free_symbols if s.name not in inputs)
    if unknown:
        raise ConfigError(f"formula uses {', '.join(unknown)}, not among the inputs {inputs!r}")
    f = sp.lambdify([sp.Symbol(n) for n in inputs], expr, "numpy")

    def call(x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(inputs):
            raise ConfigError(f"x must have shape (N, {len(inputs)}), got {x.shape}")
        return np.broadcast_to(np.asarray(f(*x.T), dtype=float), (x.shape[0],)).copy()

    return call


def _values(expr: sp.Expr, data: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    names = sorted(s.name for s in expr.free_symbols)
    f = sp.lambdify([sp.Symbol(k) for k in names], expr, "numpy")
    return np.broadcast_to(np.asarray(f(*(data[k] for k in names)), dtype=float), (n,))


def prune_terms(expr: sp.Expr, data: Mapping[str, np.ndarray], rel_tol: float = 1e-2) -> sp.Expr:
    """Drop the additive terms of the expanded formula that hardly change it on `data`.

    Terms are dropped smallest (root mean square on the data) first while the dropped ones
    together change the formula by at most rel_tol times its own root mean square.

    Args:
        expr: the formula.
        data: {input name: (N,) values} for every symbol of expr.
        rel_tol: allowed relative change, in [0, 1).

    Returns:
        the sum of the kept terms.
    """
    rel_tol = check_number(rel_tol, "rel_tol", minimum=0.0)
    missing = sorted(s.name for s in expr.free_symbols if s.name not in data)
    if missing:
        raise ConfigError(f"data has no values for {', '.join(missing)}; it holds {', '.join(data) or 'nothing'}")
    data = {k: np.asarray(v, dtype=float) for k, v in data.items()}
    n = len(next(iter(data.values()))) if data else 1
    terms = sp.Add.make_args(_expand(expr))
    vals = [_values(t, data, n) for t in terms]  # each (N,)
    limit = rel_tol * np.sqrt(np.mean(np.sum(vals, axis=0) ** 2))
    order = np.argsort([np.sqrt(np.mean(v**2)) for v in vals])
    dropped, change = set(), np.zeros(n)
    for k in order:
        if np.sqrt(np.mean((change + vals[k]) ** 2)) > limit:
            break
        change = change + vals[k]
        dropped.add(k)
    return sp.Add(*(t for k, t in enumerate(terms) if k not in dropped))


def latex(expr: sp.Expr) -> str:
    """The formula in LaTeX."""
    return sp.latex(expr)
