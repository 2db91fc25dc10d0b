"""Set operations on domains: union, difference, intersection (constructive solid geometry).

The signed distance-like functions combine as min (union), max (intersection) and max(a, -b)
(difference); the boundary is made of the operands' pieces, each restricted to where it bounds
the result (regularised set operations: a face shared by two operands of a union is inside and
dropped; in a difference, the parts of the first operand's boundary that lie on the second are
dropped, and the second operand's pieces inside the first are kept with their normals flipped).
The L-shaped domain is `Difference(Box([-1, -1], [1, 1]), Box([0, 0], [1, 1]))`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kanpde.pde.domains import Domain, Piece
from kanpde.validate import ConfigError


class _Restricted(Piece):
    """A piece of an operand, kept where `test` holds, its normals flipped if `flip`."""

    def __init__(self, piece: Piece, test, flip: bool = False):
        self.piece, self.test, self.flip = piece, test, flip
        self.name, self.aliases, self.measure = piece.name, piece.aliases, piece.measure

    def sample(self, n, sampling, generator):
        x, normal = self.piece.sample(n, sampling, generator)
        return x, -normal if self.flip else normal

    def keep(self, x: Tensor) -> Tensor:
        return self.piece.keep(x) & self.test(x)


class _Binary(Domain):
    def __init__(self, a: Domain, b: Domain):
        if a.dim != b.dim:
            raise ConfigError(f"set operations need domains of one dimension, got {a.dim} and {b.dim}")
        self.a, self.b, self.dim, self.variables = a, b, a.dim, a.variables

    def bounding_box(self):
        (la, ua), (lb, ub) = self.a.bounding_box(), self.b.bounding_box()
        return torch.minimum(la, lb), torch.maximum(ua, ub)


class Union(_Binary):
    """a or b."""

    def sdf(self, x):
        return torch.minimum(self.a.sdf(x), self.b.sdf(x))

    def pieces(self):
        tol = self.tol
        return ([_Restricted(p, lambda x: self.b.sdf(x) > tol) for p in self.a.pieces()]
                + [_Restricted(p, lambda x: self.a.sdf(x) > tol) for p in self.b.pieces()])


class Intersection(_Binary):
    """a and b."""

    def bounding_box(self):
        (la, ua), (lb, ub) = self.a.bounding_box(), self.b.bounding_box()
        lower, upper = torch.maximum(la, lb), torch.minimum(ua, ub)
        if not bool((lower < upper).all()):
            raise ConfigError("the intersection of these domains is empty")
        return lower, upper

    def sdf(self, x):
        return torch.maximum(self.a.sdf(x), self.b.sdf(x))

    def pieces(self):
        tol = self.tol  # a face the operands share is kept once, from a
        return ([_Restricted(p, lambda x: self.b.sdf(x) <= tol) for p in self.a.pieces()]
                + [_Restricted(p, lambda x: self.a.sdf(x) < -tol) for p in self.b.pieces()])


class Difference(_Binary):
    """a without b."""

    def bounding_box(self):
        return self.a.bounding_box()

    def sdf(self, x):
        return torch.maximum(self.a.sdf(x), -self.b.sdf(x))

    def pieces(self):
        tol = self.tol
        return ([_Restricted(p, lambda x: self.b.sdf(x) > tol) for p in self.a.pieces()]
                + [_Restricted(p, lambda x: self.a.sdf(x) < -tol, flip=True) for p in self.b.pieces()])
