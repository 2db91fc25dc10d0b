"""Pruning a KAN by its edge activation scales (arXiv 2404.19756, sec. 2.5.1; pykan's prune).

Edge i -> j of layer l has scale A_l[i, j] = mean over samples of |phi_ij| (`kanpde.interpret.sparsity`).
A hidden node is kept when both its incoming score (the largest scale of an edge into it, into
either factor for a multiplication node) and its outgoing score (the largest scale of an edge
out of it) exceed the threshold; an edge is kept when its scale does. Pruning sets edge masks to
0 (`KANLayer.mask`) in a copy of the model; shapes never change, unlike pykan, which builds a
smaller network. Inputs and outputs are not pruned as nodes; `prune_inputs` drops unused inputs.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from kanpde.nn.kan import KAN
from kanpde.interpret.sparsity import edge_scales
from kanpde.validate import check_number


def edge_scores(model: KAN, x: Tensor) -> list[Tensor]:
    """Edge scales A_l without gradient.

    Args:
        model: a KAN.
        x: (N, width[0]) samples.

    Returns:
        per layer, (n_in, n_out) mean |phi_ij| over the samples (0 on pruned edges).
    """
    with torch.no_grad():
        return [a.detach() for a in edge_scales(model, x)]


def node_scores(model: KAN, scores: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Incoming and outgoing scores of the hidden nodes.

    Args:
        model: a KAN.
        scores: its `edge_scores`, per layer (n_in, n_out).

    Returns:
        per hidden node layer l = 1 .. len(width) - 2 (list index l - 1), (incoming, outgoing),
        each (width[l],): the largest scale of an edge into node n (of layer l - 1, over the
        node's subnodes) and out of it (of layer l).
    """
    out = []
    for l in range(1, len(model.layers)):
        into_sub = scores[l - 1].amax(dim=0)  # (width[l] + mult[l],) per subnode
        owner = torch.tensor(model.subnode_owner(l - 1), device=into_sub.device)
        incoming = into_sub.new_zeros(model.config.width[l]).scatter_reduce(0, owner, into_sub, "amax")
        out.append((incoming, scores[l].amax(dim=1)))  # (width[l],) each
    return out


def prune(model: KAN, x: Tensor, threshold: float = 1e-2, edges: bool = True) -> KAN:
    """A copy of `model` with unimportant nodes and edges masked (the model is unchanged).

    Every edge into or out of a pruned hidden node is masked; with `edges`, so is every edge
    whose scale is at most `threshold`. Masking an edge whose activations are exactly 0 on the
    samples leaves the output on them unchanged.

    Args:
        model: a KAN.
        x: (N, width[0]) samples for the scales.
        threshold: scores <= threshold are pruned (pykan's default 1e-2).
        edges: also prune single edges, not only nodes.

    Returns:
        the pruned copy.
    """
    check_number(threshold, "threshold", minimum=0.0)
    scores = edge_scores(model, x)
    new = copy.deepcopy(model)
    with torch.no_grad():
        if edges:
            for layer, a in zip(new.layers, scores):
                layer.mask.mul_((a > threshold).to(layer.mask.dtype))
        for l, (incoming, outgoing) in enumerate(node_scores(model, scores), start=1):
            dead = (incoming <= threshold) | (outgoing <= threshold)  # (width[l],)
            new.layers[l].mask[dead, :] = 0
            owner = torch.tensor(model.subnode_owner(l - 1), device=dead.device)
            new.layers[l - 1].mask[:, dead[owner]] = 0
    return new


def used_inputs(model: KAN) -> list[int]:
    """Indices of the network inputs with at least one active (unmasked) outgoing edge."""
    return [int(i) for i in (model.layers[0].mask != 0).any(dim=1).nonzero().flatten()]


def prune_inputs(model: KAN, x: Tensor, threshold: float = 1e-2) -> tuple[KAN, list[int]]:
    """A copy of `model` with the inputs whose largest edge scale is at most `threshold` masked.

    Args:
        model: a KAN (unchanged).
        x: (N, width[0]) samples for the scales.
        threshold: an input is dropped when every outgoing edge has scale <= threshold.

    Returns:
        (the copy, `used_inputs` of the copy: the inputs it still reads).
    """
    check_number(threshold, "threshold", minimum=0.0)
    unused = edge_scores(model, x)[0].amax(dim=1) <= threshold  # (width[0],)
    new = copy.deepcopy(model)
    with torch.no_grad():
        new.layers[0].mask[unused, :] = 0
    return new, used_inputs(new)
