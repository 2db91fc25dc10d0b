"""Grid operations (kanpde.nn.grid): knots from samples, grid update in place, grid extension."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kanpde.nn.grid import extend_grid, knots_from_samples, layer_inputs, update_grid_
from kanpde.nn.kan import KAN

F64 = torch.float64
EXTENSION_BUG = (
    "kanpde.nn.grid.extended_knots treats samples that leave the old grid by rounding (1e-16..1e-14, "
    "from knots_from_samples' eps-mix or the refitted previous layer) as outside and swaps the "
    "non-uniform knots for a uniform grid, so G -> 2G is no longer exact (~1e-5)"
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def samples(n: int = 200, d: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, d, generator=gen(seed), dtype=F64) * 2 - 1


def kan(seed: int = 1, width=(2, 3, 1), grid: int = 5) -> KAN:
    return KAN(list(width), grid=grid, generator=gen(seed), dtype=F64, noise_scale=1.0)


def max_dev(a, b, x) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def test_knots_from_samples_uniform():
    """grid_eps = 1: uniform knots on [min, max] of each input, k more at the same spacing."""
    h = torch.tensor([[0.5, -2.0], [1.5, 4.0], [0.7, 1.0], [1.1, 0.0]], dtype=F64)
    knots = knots_from_samples(h, grid_size=4, order=2, grid_eps=1.0)
    steps = torch.arange(-2, 7, dtype=F64)
    expected = torch.stack([0.5 + 0.25 * steps, -2.0 + 1.5 * steps])
    torch.testing.assert_close(knots, expected, rtol=0, atol=1e-14)


def test_knots_from_samples_quantiles():
    """grid_eps = 0: inner knots at the sample quantiles (numpy's linear quantiles), outer knots
    k on each side at spacing (max - min) / G."""
    h = torch.rand(101, 3, generator=gen(2), dtype=F64) ** 3  # skewed samples
    grid, order = 5, 3
    knots = knots_from_samples(h, grid, order, grid_eps=0.0)
    q = np.quantile(h.numpy(), np.linspace(0, 1, grid + 1), axis=0).T  # (n_in, G + 1)
    np.testing.assert_allclose(knots[:, order:order + grid + 1].numpy(), q, rtol=0, atol=1e-14)
    step = (h.max(0).values - h.min(0).values) / grid
    gaps = knots.diff(dim=1)
    torch.testing.assert_close(gaps[:, :order], step[:, None].expand(-1, order), rtol=0, atol=1e-14)
    torch.testing.assert_close(gaps[:, -order:], step[:, None].expand(-1, order), rtol=0, atol=1e-14)
    assert float((gaps[:, order:-order] - step[:, None]).abs().max()) > 1e-2  # really non-uniform


def test_knots_from_samples_mix_and_constant_input():
    """grid_eps = 0.5 averages the two inner grids; a constant input gets the interval [c-1, c+1]."""
    h = torch.rand(50, 1, generator=gen(3), dtype=F64) ** 2
    mixed = knots_from_samples(h, 4, 3, grid_eps=0.5)[:, 3:8]
    avg = (knots_from_samples(h, 4, 3, 1.0)[:, 3:8] + knots_from_samples(h, 4, 3, 0.0)[:, 3:8]) / 2
    torch.testing.assert_close(mixed, avg, rtol=0, atol=1e-14)
    const = knots_from_samples(torch.full((10, 1), 2.0, dtype=F64), 4, 1, grid_eps=1.0)
    torch.testing.assert_close(const, 1.0 + 0.5 * torch.arange(-1, 6, dtype=F64).unsqueeze(0),
                               rtol=0, atol=1e-14)


def test_update_grid_keeps_parameters_and_optimizer():
    """update_grid_ keeps parameter objects and shapes (an optimiser stays valid), moves the first
    layer's knots to a uniform grid on the samples' range and returns the function's change."""
    model = kan()
    x = samples(128)
    old = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids = [id(p) for p in model.parameters()]
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    change = update_grid_(model, x, grid_eps=1.0)
    assert [id(p) for p in model.parameters()] == ids
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert change == pytest.approx(max_dev(model, old, x), rel=1e-12, abs=1e-15)
    assert 0 < change < 1e-2
    k = model.layers[0].order
    expected = (x.min(0).values[:, None]
                + (x.max(0).values - x.min(0).values)[:, None] / 5 * torch.arange(-k, 5 + k + 1, dtype=F64))
    torch.testing.assert_close(model.layers[0].knots, expected, rtol=0, atol=1e-14)
    for layer, h in zip(model.layers, layer_inputs(model, x)):  # every layer follows its inputs
        torch.testing.assert_close(layer.knots[:, k], h.min(0).values, rtol=0, atol=1e-12)
    # the optimiser still drives the model's parameters
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    (model(x) ** 2).mean().backward()
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_update_grid_non_uniform_flags_layers():
    """A quantile grid update (grid_eps = 0) marks layers non-uniform and keeps the function closely."""
    model = kan(seed=4)
    x = samples(128, seed=5)
    old = copy.deepcopy(model)
    change = update_grid_(model, x, grid_eps=0.0)
    assert [layer.uniform for layer in model.layers] == [False, False]
    assert change == pytest.approx(max_dev(model, old, x), rel=1e-12, abs=1e-15)
    assert change < 1e-2 * float(old(x).detach().abs().max())


def test_extend_grid_doubling_keeps_function():
    """G -> 2G after a uniform grid update keeps u on the samples to < 1e-8 and reports it;
    the new inner knots contain the old ones (knot insertion); the old model is unchanged."""
    model = kan(seed=6)
    x = samples(200, seed=7)
    update_grid_(model, x, grid_eps=1.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    new, change = extend_grid(model, 10, x)
    assert new is not model and new.layers[0].grid_size == 10 and model.layers[0].grid_size == 5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    dev = max_dev(new, model, x)
    assert dev < 1e-8
    assert change == pytest.approx(dev, rel=1e-12, abs=1e-16)
    assert float(model(x).detach().abs().max()) > 1e-1  # the function is not ~0
    k = model.layers[0].order
    torch.testing.assert_close(new.layers[0].knots[:, k:-k:2], model.layers[0].knots[:, k:-k],
                               rtol=0, atol=1e-13)
    assert new.constructor_args()["grid"] == 10


@pytest.mark.parametrize("grid_eps", [0.0, 0.3])
def test_extend_grid_doubling_after_nonuniform_update(grid_eps):
    """G -> 2G after a non-uniform grid update (data inside the grid) keeps u to < 1e-8."""
    model = kan(seed=6)
    x = samples(200, seed=7)
    update_grid_(model, x, grid_eps=grid_eps)
    new, change = extend_grid(model, 10, x)
    assert max_dev(new, model, x) < 1e-8
    assert change < 1e-8


def test_extend_grid_single_layer_quantile_grid_is_exact():
    """One layer, quantile knots (data exactly inside the grid): G -> 2G keeps u to < 1e-8."""
    model = kan(seed=8, width=(2, 1))
    x = samples(200, seed=9)
    update_grid_(model, x, grid_eps=0.0)
    new, change = extend_grid(model, 10, x)
    assert not new.layers[0].uniform
    assert max_dev(new, model, x) < 1e-8 and change < 1e-8


@pytest.mark.parametrize("grid", [7, 13])
def test_extend_grid_non_multiple_is_close(grid):
    """G = 5 -> 7 or 13 (not multiples: no exact knot insertion) keeps u to within 1% of its size
    (the deviation is the least-squares projection error of a rough random spline)."""
    model = kan(seed=6)
    x = samples(200, seed=7)
    update_grid_(model, x, grid_eps=1.0)
    new, change = extend_grid(model, grid, x)
    dev = max_dev(new, model, x)
    assert change == pytest.approx(dev, rel=1e-12)
    assert 1e-12 < dev < 1e-2 * float(model(x).detach().abs().max())
    assert new.layers[0].grid_size == grid


def test_extend_grid_without_update_covers_outside_samples():
    """Samples beyond the initial [-1, 1] grid: the extension widens the grid to cover them (to
    rounding) and still keeps u on the samples closely."""
    model = kan(seed=10)
    x = samples(200, seed=11) * 1.5
    new, change = extend_grid(model, 10, x)
    k = new.layers[0].order
    knots = new.layers[0].knots
    torch.testing.assert_close(knots[:, k], x.min(0).values, rtol=0, atol=1e-12)
    torch.testing.assert_close(knots[:, -k - 1], x.max(0).values, rtol=0, atol=1e-12)
    assert change == pytest.approx(max_dev(new, model, x), rel=1e-12)
    assert change < 1e-2 * float(model(x).detach().abs().max())


@pytest.mark.parametrize("grid_eps", [1.0, 0.0])
def test_grid_changes_keep_masks_and_symbolic_edges(grid_eps):
    """update_grid_ and extend_grid keep edge masks (pruned edges stay exactly 0), symbolic slots
    (same names, parameters and values) and keep u closely."""
    model = kan(seed=12, width=(2, 3, 1))
    model.layers[0].mask[1, 2] = 0.0
    model.layers[1].fix_symbolic(0, 0, "tanh", (0.8, 1.5, 0.1, -0.2))
    x = samples(200, seed=13)
    update_grid_(model, x, grid_eps=grid_eps)
    new, change = extend_grid(model, 10, x)
    for m in (model, new):
        assert float(m.layers[0].mask[1, 2]) == 0.0 and float(m.layers[0].mask.sum()) == 5.0
        assert m.layers[1].sym_names[0][0] == "tanh" and float(m.layers[1].sym_mask.sum()) == 1.0
        torch.testing.assert_close(m.layers[1].sym_params[0, 0],
                                   torch.tensor([0.8, 1.5, 0.1, -0.2], dtype=F64), rtol=0, atol=0)
        h = layer_inputs(m, x)
        with torch.no_grad():
            assert float(m.layers[0].edges(h[0])[:, 1, 2].abs().max()) == 0.0
            torch.testing.assert_close(m.layers[1].edges(h[1])[:, 0, 0],
                                       0.8 * torch.tanh(1.5 * h[1][:, 0] + 0.1) - 0.2, rtol=0, atol=1e-14)
    assert max_dev(new, model, x) < 1e-8 and change < 1e-8


def test_refit_on_uniform_knots_matches_cox_de_boor(monkeypatch):
    """The refit's least squares on uniform knots (local closed-form bases) gives the coefficients
    of the general Cox-de Boor path to rounding."""
    import kanpde.nn.grid as grid

    model = kan(width=(2, 4, 1))
    x = samples(500)
    layer = model.layers[0]
    knots = grid.refined_knots(layer.knots, 20, layer.order)
    assert grid.is_uniform(knots)
    fast = grid._refit(layer, x, knots)
    monkeypatch.setattr(grid, "is_uniform", lambda k: False)
    general = grid._refit(layer, x, knots)
    assert fast.shape == general.shape == (2, 23, 4)
    assert float((fast - general).abs().max()) <= 1e-10 * float(general.abs().max())
