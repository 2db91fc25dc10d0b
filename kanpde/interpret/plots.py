"""Pictures of a KAN: every edge's learned function and the network diagram (arXiv 2404.19756,
sec. 2.5, Fig. 2.4).

Figures are drawn on matplotlib's Agg canvas (`matplotlib.figure.Figure`, no pyplot), so
plotting never opens a window or changes the global backend.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from kanpde.interpret.prune import edge_scores
from kanpde.interpret.symbolic import edge_samples, node_counts

_SPLINE, _SYMBOLIC, _PRUNED = "tab:blue", "tab:red", "0.7"


def _label(layer: nn.Module, i: int, j: int) -> tuple[str, str]:
    """(kind, colour) of edge i -> j: 'pruned', the symbolic function's name, or 'spline'."""
    if not layer.mask[i, j]:
        return "pruned", _PRUNED
    if layer.sym_mask[i, j]:
        return layer.sym_names[i][j], _SYMBOLIC
    return "spline", _SPLINE


def plot_edges(model: nn.Module, x: Tensor, path: str | Path, max_cols: int = 8) -> Path:
    """A grid of every edge's function over the values its input takes for inputs x.

    Pruned edges are grey, symbolic ones red and titled with their function.

    Args:
        model: a KAN.
        x: (N, width[0]) network inputs.
        path: image file to write (format from the suffix, e.g. .png, .pdf).
        max_cols: panels per row.

    Returns:
        the written path.
    """
    samples = edge_samples(model, x)
    edges = [(l, i, j) for l, layer in enumerate(model.layers)
             for i in range(layer.in_dim) for j in range(layer.out_dim)]
    cols = min(max_cols, len(edges))
    rows = math.ceil(len(edges) / cols)
    fig = Figure(figsize=(1.9 * cols, 1.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(edges):]:
        ax.set_axis_off()
    for ax, (l, i, j) in zip(axes.flat, edges):
        h, e = samples[l]
        order = torch.argsort(h[:, i])
        hx, ey = h[order, i].double().cpu().numpy(), e[order, i, j].double().cpu().numpy()
        kind, colour = _label(model.layers[l], i, j)
        ax.plot(hx, ey, color=colour, lw=1.2)
        if kind == "pruned":
            ax.set_facecolor("0.93")
        ax.set_title(f"layer {l}: {i}\u2192{j}  {kind}", fontsize=7, color="0.4" if kind == "pruned" else colour)
        ax.tick_params(labelsize=6)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def _positions(n: int, span: int) -> np.ndarray:
    """x positions of n nodes centred in a row as wide as the widest layer (span nodes)."""
    return (np.arange(n) - (n - 1) / 2) / max(span, 1)


def plot_network(model: nn.Module, x: Tensor, path: str | Path, inputs: list[str] | None = None) -> Path:
    """The network diagram: nodes by layer, edges drawn with opacity and width by edge scale.

    An edge's scale is its mean |phi| on x, relative to the largest in its layer; pruned edges
    are dotted grey, symbolic ones red and labelled with their function. A multiplication node
    (square, x) is fed by its two subnodes.

    Args:
        model: a KAN.
        x: (N, width[0]) network inputs.
        path: image file to write.
        inputs: names of the inputs, written under the first row.

    Returns:
        the written path.
    """
    width = model.config.width
    span = max(width)
    scales = [a.cpu() for a in edge_scores(model, x)]
    fig = Figure(figsize=(max(3.0, 1.0 * span + 1), 1.6 * len(width)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    for l, layer in enumerate(model.layers):
        x_in, x_out = _positions(width[l], span), _positions(width[l + 1], span)
        n_sum, n_mult = node_counts(model, l)
        gap = 0.25 / max(span, 1)
        sub_x = np.concatenate([x_out[:n_sum]] + [x_out[n_sum + k] + np.array([-gap, gap]) for k in range(n_mult)])
        sub_y = np.array([l + 1.0] * n_sum + [l + 0.75] * (2 * n_mult))
        ax.scatter(sub_x[n_sum:], sub_y[n_sum:], s=8, c="k", zorder=3)
        for k in range(n_mult):  # subnodes into their product node
            for s in (n_sum + 2 * k, n_sum + 2 * k + 1):
                ax.plot([sub_x[s], x_out[n_sum + k]], [sub_y[s], l + 1], color="k", lw=0.6)
        top = float(scales[l].max())
        for i in range(layer.in_dim):
            for j in range(layer.out_dim):
                kind, colour = _label(layer, i, j)
                xs, ys = [x_in[i], sub_x[j]], [l, sub_y[j]]
                if kind == "pruned":
                    ax.plot(xs, ys, color=_PRUNED, lw=0.5, ls=":")
                    continue
                alpha = float(scales[l][i, j]) / top if top > 0 else 0.0
                ax.plot(xs, ys, color=colour if kind != "spline" else "k", alpha=max(alpha, 0.05),
                        lw=0.4 + 2.6 * alpha)
                if kind != "spline":
                    ax.text(0.6 * xs[0] + 0.4 * xs[1], 0.6 * ys[0] + 0.4 * ys[1], kind, fontsize=7,
                            color=colour, ha="center", va="center")
    for l, n in enumerate(width):
        n_mult = node_counts(model, l - 1)[1] if l > 0 else 0
        px = _positions(n, span)
        ax.scatter(px[: n - n_mult], [l] * (n - n_mult), s=40, c="k", zorder=3)
        if n_mult:
            ax.scatter(px[n - n_mult:], [l] * n_mult, s=90, c="w", edgecolors="k", marker="s", zorder=3)
            for p in px[n - n_mult:]:
                ax.text(p, l, "\u00d7", ha="center", va="center", fontsize=8, zorder=4)
    for k, name in enumerate(inputs or []):
        ax.text(_positions(width[0], span)[k], -0.2, name, ha="center", va="top", fontsize=8)
    ax.set_xlim(-0.6, 0.6)
    ax.set_ylim(-0.45, len(width) - 0.6)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
