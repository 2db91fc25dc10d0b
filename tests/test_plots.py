"""Pictures of a KAN (kanpde.interpret.plots): files are written, for plain, pruned, symbolic and mult-node models."""

from __future__ import annotations

import pytest
import torch

from kanpde.nn.kan import KAN
from kanpde.interpret.plots import plot_edges, plot_network
from kanpde.interpret.prune import edge_scores as edge_scales


@pytest.mark.parametrize("width, mult", [([2, 3, 1], None), ([3, 3, 1], [0, 1, 0])])
def test_plots_are_written(tmp_path, width, mult):
    """Both figures are written and non-empty, with a pruned and a symbolic edge present."""
    model = KAN(width, mult=mult, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.layers[0].mask[0, 1] = 0
    model.layers[0].fix_symbolic(1, 0, "sin", params=(1.0, 2.0, 0.0, 0.0))
    x = torch.rand(100, width[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    edges = plot_edges(model, x, tmp_path / "edges.png")
    net = plot_network(model, x, tmp_path / "network.pdf", inputs=[f"x{k}" for k in range(width[0])])
    assert edges.stat().st_size > 1000 and net.stat().st_size > 1000
    assert edges.read_bytes()[:4] == b"\x89PNG" and net.read_bytes()[:4] == b"%PDF"


def test_edge_scales_are_mean_absolute_values():
    """The scale of edge i -> j is mean |phi_ij| over the samples; pruned edges have scale 0."""
    model = KAN([2, 2], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.layers[0].mask[1, 1] = 0
    x = torch.rand(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (scale,) = edge_scales(model, x)
    with torch.no_grad():
        want = model.layers[0].edges(x).abs().mean(0)
    torch.testing.assert_close(scale, want)
    assert scale[1, 1] == 0 and (scale[[0, 0, 1], [0, 1, 0]] > 0).all()
