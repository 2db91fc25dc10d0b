"""`at_points`: a term of the points alone is computed once per point tensor, and only reused
for that very tensor, unchanged."""

from __future__ import annotations

import copy
import pickle

import torch

from kanpde.pde.memo import KEEP, at_points
from kanpde.registry import build_problem


class Counting:
    def __init__(self):
        self.calls = 0
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    @at_points
    def source(self, x):
        self.calls += 1
        return torch.sin(x)

    @at_points
    def trained(self, x):
        self.calls += 1
        return self.scale * x


def test_same_tensor_computed_once():
    p, x = Counting(), torch.linspace(0, 1, 5)
    first = p.source(x)
    assert p.source(x) is first and p.calls == 1
    assert torch.equal(first, torch.sin(x))


def test_equal_values_in_another_tensor_are_computed_afresh():
    p, x = Counting(), torch.linspace(0, 1, 5)
    p.source(x)
    p.source(x.clone())
    assert p.calls == 2


def test_an_edited_tensor_is_computed_afresh():
    p, x = Counting(), torch.linspace(0, 1, 5)
    p.source(x)
    x.add_(1.0)
    assert torch.equal(p.source(x), torch.sin(x)) and p.calls == 2


def test_points_with_grad_and_trained_values_are_never_cached():
    p = Counting()
    x = torch.linspace(0, 1, 5, requires_grad=True)
    p.source(x), p.source(x)
    assert p.calls == 2
    y = torch.linspace(0, 1, 5)
    p.trained(y), p.trained(y)
    assert p.calls == 4


def test_inside_a_torch_func_transform_nothing_is_cached():
    p, x = Counting(), torch.linspace(0, 1, 5)
    torch.func.vmap(p.source)(x[:, None])
    torch.func.vmap(p.source)(x[:, None])
    assert p.calls == 2


def test_keeps_a_few_point_sets_and_each_problem_its_own():
    p, q = Counting(), Counting()
    sets = [torch.rand(3) for _ in range(KEEP + 1)]
    for x in sets:
        p.source(x)
    p.source(sets[-1]), q.source(sets[-1])
    assert p.calls == KEEP + 1 and q.calls == 1
    p.source(sets[0])  # the oldest was dropped
    assert p.calls == KEEP + 2


def test_a_problem_with_memos_copies_and_pickles():
    problem = build_problem({"name": "poisson"})
    x = torch.rand(10, 2)
    f = problem.source(x)
    for other in (copy.deepcopy(problem), pickle.loads(pickle.dumps(problem))):
        assert torch.equal(other.source(x), f)
