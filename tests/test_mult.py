"""Multiplication nodes (KAN 2.0's MultKAN): subnode order, jets, grid changes, config and records."""

from __future__ import annotations

import math

import pytest
import torch

from kanpde.nn.derivatives import autograd_jet
from kanpde.nn.grid import extend_grid, layer_inputs, update_grid_
from kanpde.nn.kan import KAN
from kanpde.record import load_model, read_history
from kanpde.registry import build_model
from kanpde.run import run
from kanpde.validate import ConfigError

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=gen(seed), dtype=F64) * 2 - 1


def product_kan() -> KAN:
    """KAN [2, 1, 1] with mult [0, 1, 0] wired by symbolic edges to u = (x1 + 1) (2 x2 - 0.5)."""
    model = KAN([2, 1, 1], grid=3, mult=[0, 1, 0], generator=gen(0), dtype=F64)
    first, second = model.layers
    assert (first.in_dim, first.out_dim, second.in_dim, second.out_dim) == (2, 2, 1, 1)
    first.fix_symbolic(0, 0, "x", (1.0, 1.0, 0.0, 1.0))  # subnode 0 = x1 + 1
    first.fix_symbolic(1, 1, "x", (2.0, 1.0, 0.0, -0.5))  # subnode 1 = 2 x2 - 0.5
    first.mask[0, 1] = first.mask[1, 0] = 0.0
    second.fix_symbolic(0, 0, "x")
    return model


def test_multiplication_node_multiplies_its_subnodes():
    """The product KAN computes (x1 + 1)(2 x2 - 0.5) exactly; its jet is the analytic gradient
    (2 x2 - 0.5, 2 (x1 + 1)) with second channels [0, 1, 0] in "full" mode (u_12 = 2)."""
    model = product_kan()
    x = points(12, 2, seed=1)
    x1, x2 = x[:, :1], x[:, 1:]
    torch.testing.assert_close(model(x), (x1 + 1) * (2 * x2 - 0.5), rtol=0, atol=1e-15)
    j = model.jet(x, "full")  # channels (1,1), (1,2), (2,2)
    torch.testing.assert_close(j.grad[:, 0], torch.cat([2 * x2 - 0.5, 2 * (x1 + 1)], dim=1), rtol=0, atol=1e-14)
    expected = torch.tensor([0.0, 2.0, 0.0], dtype=F64).expand(12, 3)
    torch.testing.assert_close(j.second[:, 0], expected, rtol=0, atol=1e-14)


def test_combine_subnode_order():
    """Node layer [2 sum, 2 product] from 6 subnodes: [s0, s1, s2 s3, s4 s5]; subnode_owner maps
    subnodes to nodes; layer widths count subnodes."""
    model = KAN([3, 4, 2, 1], mult=[0, 2, 1, 0], generator=gen(2), dtype=F64)
    assert [(layer.in_dim, layer.out_dim) for layer in model.layers] == [(3, 6), (4, 3), (2, 1)]
    y = torch.arange(1.0, 7.0, dtype=F64).reshape(1, 6)
    torch.testing.assert_close(model.combine(0, y), torch.tensor([[1.0, 2.0, 12.0, 30.0]], dtype=F64))
    assert model.subnode_owner(0) == [0, 1, 2, 2, 3, 3]
    assert model.subnode_owner(1) == [0, 1, 1] and model.subnode_owner(2) == [0]
    assert model.combine(2, y[:, :1]) is not None and torch.equal(model.combine(2, y[:, :1]), y[:, :1])


def test_mult_kan_forward_and_jet_equal_hand_composition_and_autograd():
    """A random spline MultKAN: forward equals the layers composed with `combine` by hand, and
    KAN.jet (autograd fallback) equals nested autograd; mult=None keeps the plain KAN's numbers."""
    model = KAN([2, 3, 1], grid=4, mult=[0, 1, 0], generator=gen(3), dtype=F64, noise_scale=1.0)
    x = points(10, 2, seed=4)
    raw = model.layers[0](x)  # (N, 4)
    nodes = torch.stack([raw[:, 0], raw[:, 1], raw[:, 2] * raw[:, 3]], dim=1)
    torch.testing.assert_close(model(x), model.layers[1](nodes), rtol=0, atol=1e-15)
    assert not model.fast_jet
    fast, slow = model.jet(x, "laplacian"), autograd_jet(model, x, "laplacian")
    torch.testing.assert_close(fast.second, slow.second, rtol=0, atol=1e-12)
    plain = KAN([2, 3, 1], grid=4, generator=gen(3), dtype=F64)
    same = KAN([2, 3, 1], grid=4, mult=[0, 0, 0], generator=gen(3), dtype=F64)
    torch.testing.assert_close(plain(x), same(x), rtol=0, atol=0)
    assert plain.fast_jet and same.fast_jet and plain.constructor_args()["mult"] is None


@pytest.mark.parametrize("mult, words", [
    ([0, 1], r"null or 3 non-negative integers, one per width entry, got \[0, 1\]"),
    ([0, -1, 0], "non-negative integers"),
    ([0, 1.5, 0], "non-negative integers"),
    ("010", "non-negative integers"),
    ([1, 0, 0], "0 for the input and output"),
    ([0, 0, 1], "0 for the input and output"),
    ([0, 4, 0], r"model.mult\[1\] must be at most width\[1\] = 3, got 4"),
])
def test_mult_rejects_bad_values(mult, words):
    """Bad mult lists raise a one-line ConfigError naming the value and what is allowed."""
    with pytest.raises(ConfigError, match=words):
        KAN([2, 3, 1], mult=mult)


def test_grid_update_and_extension_follow_combined_nodes():
    """On a MultKAN, layer_inputs are the combined node values, update_grid_ places layer 1's knots
    on them, and G -> 2G extension keeps u to < 1e-8; masks and symbolic slots carry over."""
    model = KAN([2, 3, 1], grid=5, mult=[0, 1, 0], generator=gen(5), dtype=F64, noise_scale=1.0)
    model.layers[0].mask[1, 0] = 0.0
    model.layers[1].fix_symbolic(2, 0, "sin", (0.5, 1.0, 0.0, 0.0))
    x = points(200, 2, seed=6)
    h = layer_inputs(model, x)
    assert [t.shape[1] for t in h] == [2, 3]
    torch.testing.assert_close(h[1], model.combine(0, model.layers[0](x)).detach(), rtol=0, atol=0)
    update_grid_(model, x, grid_eps=1.0)
    k = model.layers[1].order
    torch.testing.assert_close(model.layers[1].knots[:, k], layer_inputs(model, x)[1].min(0).values,
                               rtol=0, atol=1e-12)
    new, change = extend_grid(model, 10, x)
    with torch.no_grad():
        dev = float((new(x) - model(x)).abs().max())
    assert dev < 1e-8 and change == pytest.approx(dev, rel=1e-12, abs=1e-16)
    assert float(new.layers[0].mask[1, 0]) == 0.0 and new.layers[1].sym_names[2][0] == "sin"
    assert new.config.mult == [0, 1, 0]


def test_mult_and_reg_from_config_run_and_reload(tiny_config, tmp_path):
    """`model.mult` is a config key: a tiny Poisson run with a MultKAN, grid extension 3 -> 5 and a
    sparsity-regularised stage writes a record whose reloaded model reproduces its predictions."""
    cfg = tiny_config("model=kan", "model.width=[2,3,1]", "model.mult=[0,1,0]")
    cfg.optim.stages = [{"optimizer": "lbfgs", "steps": 1, "grid": 3, "max_iter": 2},
                        {"optimizer": "adam", "steps": 1, "lr": 1e-3, "grid": 5, "reg": 0.01}]
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "ok" and math.isfinite(metrics["l2_sq"])
    model = load_model(tmp_path)
    assert model.config.mult == [0, 1, 0] and model.layers[0].out_dim == 4
    hist = read_history(tmp_path)
    assert math.isnan(hist["loss_reg"][0]) and hist["loss_reg"][-1] > 0
    rebuilt = build_model({"name": "kan", **model.constructor_args()}, dtype=F64)
    rebuilt.load_state_dict(model.state_dict())
    x = points(5, 2, seed=7)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_autograd_fallback_works_under_no_grad():
    """The jet of a MultKAN is available inside torch.no_grad() (evaluation code), equal to the
    jet outside it."""
    model = product_kan()
    x = points(6, 2, seed=8)
    with torch.no_grad():
        inside = model.jet(x, "laplacian")
    outside = model.jet(x, "laplacian")
    torch.testing.assert_close(inside.grad, outside.grad, rtol=0, atol=0)
