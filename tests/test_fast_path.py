"""The forward-derivative fast path equals nested autograd: losses and parameter gradients."""

from __future__ import annotations

import pytest
import torch

from kanpde.nn.grid import update_grid_
from kanpde.registry import build_model, build_problem


def _loss_and_grads(model, problem, data, fast):
    model.zero_grad(set_to_none=True)
    loss = sum(problem.losses(model, data, fast).values())
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


KANS = [
    {"name": "kan", "width": [2, 10, 1], "grid": 5},
    {"name": "kan", "width": [2, 6, 4, 1], "grid": 7},
    {"name": "kan", "width": [2, 32, 3, 1], "grid": 3},  # dense-feature layers too
]
MLPS = [
    {"name": "mlp", "width": [2, 16, 16, 1], "activation": "tanh"},
    {"name": "mlp", "width": [2, 16, 1], "activation": "silu"},
]


@pytest.mark.parametrize(
    ("spec", "adapted"),
    [(k, a) for k in KANS for a in (False, True)] + [(m, False) for m in MLPS],  # grids: KANs only
)
def test_poisson_loss_and_gradients_match_autograd(spec, adapted):
    """Fast-path Poisson loss and every parameter gradient agree with nested autograd to 1e-10."""
    problem = build_problem({"name": "poisson", "n_interior": 200, "n_boundary": 40, "n_test": 10})
    data = problem.sample(torch.Generator().manual_seed(1))
    model = build_model(spec, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():  # move away from the near-linear initial functions
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3), dtype=p.dtype))
    if adapted:
        update_grid_(model, data["interior"] * 1.1, grid_eps=0.4)  # non-uniform knots, some points outside
        assert not model.layers[0].uniform
    fast_loss, fast_grads = _loss_and_grads(model, problem, data, True)
    slow_loss, slow_grads = _loss_and_grads(model, problem, data, False)
    assert torch.isclose(fast_loss, slow_loss, rtol=1e-10, atol=0)
    for a, b in zip(fast_grads, slow_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12 * b.abs().max().item())
