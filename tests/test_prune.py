"""Pruning (kanpde.interpret.prune): edge scores against a hand computation, which nodes and edges go."""

from __future__ import annotations

import pytest
import torch

from kanpde.nn.bspline import basis
from kanpde.nn.grid import layer_inputs
from kanpde.nn.kan import KAN
from kanpde.interpret.prune import edge_scores, node_scores, prune, prune_inputs, used_inputs
from kanpde.validate import ConfigError

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=gen(seed), dtype=F64) * 2 - 1


def zero_edge(model: KAN, l: int, i: int, j: int) -> None:
    """Make edge i -> j of layer l exactly 0: zero coefficients and base weight."""
    with torch.no_grad():
        model.layers[l].coef[i, :, j] = 0.0
        model.layers[l].base_weight[i, j] = 0.0


def test_edge_scores_equal_mean_abs_activation_by_hand():
    """A_l[i, j] = mean_s |w_b silu(h_i) + sum_k c_k B_k(h_i)|, with the layer inputs h from the
    forward pass and Cox-de Boor bases (an independent evaluation)."""
    model = KAN([2, 3, 2], grid=4, generator=gen(0), dtype=F64, noise_scale=1.0)
    x = points(50, 2, seed=1)
    scores = edge_scores(model, x)
    for layer, h, a in zip(model.layers, layer_inputs(model, x), scores):
        b = basis(h, layer.knots, layer.order)  # (N, n_in, G+k)
        phi = (torch.nn.functional.silu(h)[..., None] * layer.base_weight.detach()
               + torch.einsum("nik,iko->nio", b, layer.coef.detach()))
        torch.testing.assert_close(a, phi.abs().mean(dim=0), rtol=0, atol=1e-14)
        assert not a.requires_grad


def zero_edge_kan() -> KAN:
    """KAN [2, 3, 1] whose hidden node 1 has only zero edges and node 2 a zero outgoing edge."""
    model = KAN([2, 3, 1], grid=4, generator=gen(2), dtype=F64, noise_scale=1.0)
    for i in range(2):
        zero_edge(model, 0, i, 1)
    zero_edge(model, 1, 1, 0)
    zero_edge(model, 1, 2, 0)
    return model


def test_prune_removes_zero_edges_and_dead_nodes_exactly():
    """Zero edges are masked, node 1 (no input) and node 2 (no output) lose all their edges, the
    other edges stay; the output on the samples is unchanged bit for bit; the model is untouched."""
    model = zero_edge_kan()
    x = points(100, 2, seed=3)
    scores = edge_scores(model, x)
    assert float(scores[0][:, [0, 2]].min()) > 1e-2 and float(scores[1][0, 0]) > 1e-2  # kept ones matter
    pruned = prune(model, x, threshold=1e-2)
    assert pruned is not model
    torch.testing.assert_close(pruned.layers[0].mask, torch.tensor([[1.0, 0, 0], [1, 0, 0]], dtype=F64),
                               rtol=0, atol=0)
    torch.testing.assert_close(pruned.layers[1].mask, torch.tensor([[1.0], [0], [0]], dtype=F64), rtol=0, atol=0)
    assert all(float(layer.mask.min()) == 1.0 for layer in model.layers)
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))


def test_prune_edges_false_prunes_nodes_only():
    """With edges=False a small edge between kept nodes survives; dead nodes still go."""
    model = zero_edge_kan()
    with torch.no_grad():
        model.layers[0].coef[1, :, 0] *= 1e-6  # tiny but non-zero edge 1 -> 0
        model.layers[0].base_weight[1, 0] *= 1e-6
    x = points(100, 2, seed=4)
    assert float(edge_scores(model, x)[0][1, 0]) < 1e-2
    nodes_only = prune(model, x, threshold=1e-2, edges=False)
    both = prune(model, x, threshold=1e-2)
    assert float(nodes_only.layers[0].mask[1, 0]) == 1.0 and float(both.layers[0].mask[1, 0]) == 0.0
    assert float(nodes_only.layers[0].mask[:, 1].max()) == 0.0 and float(nodes_only.layers[1].mask[2, 0]) == 0.0


def test_node_scores_with_multiplication_node():
    """A multiplication node's incoming score is the largest edge into either of its subnodes."""
    model = KAN([2, 2, 1], grid=3, mult=[0, 1, 0], generator=gen(5), dtype=F64)
    scores = [torch.tensor([[0.1, 0.0, 0.3], [0.2, 0.05, 0.0]], dtype=F64),
              torch.tensor([[0.4], [0.0]], dtype=F64)]
    ((incoming, outgoing),) = node_scores(model, scores)
    torch.testing.assert_close(incoming, torch.tensor([0.2, 0.3], dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(outgoing, torch.tensor([0.4, 0.0], dtype=F64), rtol=0, atol=0)


def test_prune_mult_node_masks_both_subnodes():
    """Pruning a multiplication node with a zero outgoing edge masks the edges into both of its
    subnodes, and leaves the output unchanged."""
    model = KAN([2, 2, 1], grid=3, mult=[0, 1, 0], generator=gen(6), dtype=F64, noise_scale=1.0)
    zero_edge(model, 1, 1, 0)
    x = points(80, 2, seed=7)
    pruned = prune(model, x)
    torch.testing.assert_close(pruned.layers[0].mask, torch.tensor([[1.0, 0, 0], [1, 0, 0]], dtype=F64),
                               rtol=0, atol=0)
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))


def test_prune_inputs_drops_unused_input():
    """An input whose edges are all zero is dropped (its edges masked) and the output unchanged;
    `used_inputs` reads the masks."""
    model = KAN([3, 2, 1], grid=4, generator=gen(8), dtype=F64, noise_scale=1.0)
    for j in range(2):
        zero_edge(model, 0, 1, j)
    x = points(60, 3, seed=9)
    assert used_inputs(model) == [0, 1, 2]
    pruned, used = prune_inputs(model, x, threshold=1e-2)
    assert used == [0, 2] == used_inputs(pruned)
    assert float(pruned.layers[0].mask[1].max()) == 0.0 and float(pruned.layers[0].mask[[0, 2]].min()) == 1.0
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))


@pytest.mark.parametrize("threshold", [-1.0, "0.1"])
def test_prune_rejects_bad_threshold(threshold):
    model = KAN([2, 2, 1], generator=gen(0), dtype=F64)
    with pytest.raises(ConfigError, match="threshold"):
        prune(model, points(5, 2, seed=0), threshold=threshold)
