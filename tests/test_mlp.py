"""The MLP's forward-propagated jet (`kanpde.nn.mlp`) against nested autograd, values and
parameter gradients, for every activation and second-derivative mode."""

from __future__ import annotations

import pytest
import torch

from kanpde.nn.derivatives import autograd_jet
from kanpde.nn.mlp import ACTIVATIONS, MLP

F64 = torch.float64
MODES = ("none", "laplacian", "diag", "full")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("mode", MODES)
def test_mlp_jet_and_parameter_gradients_equal_autograd(name, mode):
    model = MLP([3, 8, 7, 2], activation=name, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = torch.rand(11, 3, dtype=F64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    fast, ref = model.jet(x, mode), autograd_jet(model, x, mode)
    for a, b in ((fast.value, ref.value), (fast.grad, ref.grad), (fast.second, ref.second)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    weights = [torch.randn(t.shape, dtype=F64, generator=torch.Generator().manual_seed(3)) for t in (fast.value, fast.grad, fast.second)]

    def grads(jet):
        loss = sum((w * t).sum() for w, t in zip(weights, (jet.value, jet.grad, jet.second)))
        return torch.autograd.grad(loss, list(model.parameters()))

    for a, b in zip(grads(model.jet(x, mode)), grads(autograd_jet(model, x, mode))):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
