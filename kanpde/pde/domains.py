"""Domains: where a PDE holds, how to sample its interior and boundary, and its outward normals.

Every domain has a signed distance-like function `sdf` (negative inside, zero on the boundary,
positive outside), a bounding box, and boundary `Piece`s, each with a name (and aliases), a
measure, and a sampler that returns points with their outward unit normals. The primitives are
`Box` (any dimension; `Interval` in 1-D), `Ball` (`Disk` in 2-D) and `Polygon`; set operations
(`kanpde.pde.csg`) and space-time products (`kanpde.pde.timedomain`) are built on the same
contract. Samples come from `kanpde.pde.sampling` (mesh, random, Sobol, Latin hypercube) and an
explicit generator; interiors of non-box domains are drawn from the bounding box by rejection,
and boundaries are shared among the pieces in proportion to their measure.

A condition says where it holds with `where`: a part name ("left", "x_min", "circle",
"initial"), a list of names, or a predicate on points (N, d) -> (N,) bool.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from kanpde.pde.sampling import SAMPLINGS, mesh_points, unit_points, unit_ticks
from kanpde.validate import ConfigError, check_choice, check_int

Where = str | Sequence[str] | Callable[[Tensor], Tensor] | None
AXIS_NAMES = ("x", "y", "z")
_ALIASES = {1: {("x", 0): "left", ("x", 1): "right"},
            2: {("x", 0): "left", ("x", 1): "right", ("y", 0): "bottom", ("y", 1): "top"}}


def default_names(d: int) -> tuple[str, ...]:
    """("x",), ("x", "y"), ("x", "y", "z"), else ("x0", ..., "x{d-1}")."""
    return AXIS_NAMES[:d] if d <= 3 else tuple(f"x{i}" for i in range(d))


class Piece(abc.ABC):
    """A part of a domain's boundary with outward normals."""

    name: str
    aliases: tuple[str, ...] = ()
    measure: float

    @abc.abstractmethod
    def sample(self, n: int, sampling: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(points (n', d), outward unit normals (n', d)); n' ~ n ("mesh" rounds)."""

    def keep(self, x: Tensor) -> Tensor:
        """(N,) bool: which sampled points belong to the domain's boundary (set operations drop
        the parts of a piece that another operand covers)."""
        return torch.ones(x.shape[0], dtype=torch.bool)

    def matches(self, name: str) -> bool:
        return name == self.name or name in self.aliases


class Domain(abc.ABC):
    """A bounded region of R^d with named boundary parts."""

    dim: int
    variables: tuple[str, ...]

    @abc.abstractmethod
    def sdf(self, x: Tensor) -> Tensor:
        """(N,) signed distance-like value at x (N, d): < 0 inside, 0 on the boundary, > 0 outside."""

    @abc.abstractmethod
    def bounding_box(self) -> tuple[Tensor, Tensor]:
        """(lower (d,), upper (d,)) of a box holding the domain."""

    @abc.abstractmethod
    def pieces(self) -> list[Piece]:
        """The boundary pieces."""

    @property
    def tol(self) -> float:
        """Distance below which a point counts as on the boundary."""
        lower, upper = self.bounding_box()
        return 1e-9 * float((upper - lower).norm())

    def contains(self, x: Tensor, closed: bool = True) -> Tensor:
        """(N,) bool: x (N, d) inside, with the boundary if `closed`: the closure of the interior,
        so a set operation's degenerate seams (the edges of the L-shape's removed square that lie
        on the outer box) are outside."""
        s = self.sdf(x)
        inside = s < -self.tol
        if not closed:
            return inside
        on = ~inside & (s <= self.tol)
        if bool(on.any()):  # a boundary point touches the interior: some nearby probe is inside
            eps = 1e3 * self.tol
            probes = _probe_directions(self.dim, x.dtype)
            near = x[on][:, None, :] + eps * probes[None] / probes.norm(dim=1)[None, :, None]  # (M, K, d)
            touched = (self.sdf(near.reshape(-1, self.dim)).reshape(len(near), -1) < -self.tol).any(dim=1)
            inside = inside.clone()
            inside[on] = touched
        return inside

    def part_names(self) -> list[str]:
        """Names `where` accepts."""
        names: list[str] = []
        for p in self.pieces():
            names += [n for n in (p.name, *p.aliases) if n not in names]
        return names

    def _scale(self, unit: Tensor) -> Tensor:
        lower, upper = self.bounding_box()
        return lower + unit * (upper - lower)

    def interior(self, n: int, sampling: str, generator: torch.Generator) -> Tensor:
        """(n', d) points inside: n' = n, except the nearest mesh for "mesh"."""
        check_int(n, "number of interior points", minimum=1)
        check_choice(sampling, "sampling", SAMPLINGS)
        if sampling == "mesh":  # the bounding box's mesh, thinned to the domain, sized to give ~n
            x = self._scale(unit_points(n, self.dim, "mesh", generator))
            frac = max(float(self.contains(x, closed=False).double().mean()), 1e-3)
            x = self._scale(unit_points(max(1, round(n / frac)), self.dim, "mesh", generator))
            return x[self.contains(x, closed=False)]
        chunks, have = [], 0
        while have < n:
            x = self._scale(unit_points(max(16, 2 * (n - have)), self.dim, sampling, generator))
            x = x[self.contains(x, closed=False)]
            chunks.append(x)
            have += len(x)
        return torch.cat(chunks)[:n]

    def select(self, where: Where) -> tuple[list[Piece], Callable[[Tensor], Tensor] | None]:
        """The pieces a `where` names, and the predicate it adds (None: none)."""
        pieces = self.pieces()
        if where is None or callable(where):
            return pieces, where
        names = [where] if isinstance(where, str) else list(where)
        chosen = [p for p in pieces if any(p.matches(n) for n in names)]
        for n in names:
            if not any(p.matches(n) for p in pieces):
                raise ConfigError(f"boundary part {n!r} is not a part of this domain; "
                                  f"allowed: {', '.join(self.part_names())}")
        return chosen, None

    def boundary(self, n: int, sampling: str, generator: torch.Generator,
                 where: Where = None) -> tuple[Tensor, Tensor]:
        """Points on the boundary (or the part `where` names) and their outward unit normals.

        Args:
            n: how many (n' ~ n for "mesh"; pieces share them in proportion to their measure).
            sampling: one of `kanpde.pde.sampling.SAMPLINGS`.
            generator: the source of randomness.
            where: see the module docstring.

        Returns:
            (x (n', d), normal (n', d)).
        """
        check_int(n, "number of boundary points", minimum=1)
        check_choice(sampling, "sampling", SAMPLINGS)
        pieces, predicate = self.select(where)
        if sampling == "mesh":
            x, nrm = _sample_pieces(pieces, n, sampling, generator, predicate)
            frac = len(x) / max(1, sum(_counts(pieces, n)))
            if 0 < frac < 0.98:  # set operations or a predicate cut pieces: ask for more
                x, nrm = _sample_pieces(pieces, round(n / frac), sampling, generator, predicate)
            return x, nrm
        xs, ns, have = [], [], 0
        for _ in range(1000):
            x, nrm = _sample_pieces(pieces, n - have if not xs else 2 * (n - have), sampling, generator, predicate)
            xs.append(x)
            ns.append(nrm)
            have += len(x)
            if have >= n:  # a random n of them: truncating would favour the pieces sampled first
                keep = torch.randperm(have, generator=generator)[:n].sort().values if have > n else slice(None)
                return torch.cat(xs)[keep], torch.cat(ns)[keep]
        raise ConfigError(f"found only {have} of {n} boundary points where {where!r} holds")

    def mesh(self, n_per_axis: int) -> Tensor:
        """(n_per_axis ** d, d) mesh of the bounding box including its faces, for plots and records
        (points outside the domain included: `contains` tells them)."""
        ticks = torch.linspace(0, 1, n_per_axis, dtype=torch.float64)
        return self._scale(mesh_points([ticks] * self.dim))


def _probe_directions(d: int, dtype: torch.dtype) -> Tensor:
    """(K, d) directions to look for the interior from a boundary point: the axes both ways and,
    up to 3-D, the diagonals (a corner's interior may lie only diagonally)."""
    eye = torch.eye(d, dtype=dtype)
    dirs = [eye, -eye]
    if 1 < d <= 3:
        dirs.append(mesh_points([torch.tensor([-1.0, 1.0], dtype=dtype)] * d))
    return torch.cat(dirs)


def _counts(pieces: list[Piece], n: int) -> list[int]:
    """n shared in proportion to the pieces' measures, largest remainders first (sums to n)."""
    total = sum(p.measure for p in pieces)
    share = [n * p.measure / total if total > 0 else n / len(pieces) for p in pieces]
    counts = [math.floor(s) for s in share]
    for i in sorted(range(len(pieces)), key=lambda i: counts[i] - share[i])[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _sample_pieces(pieces, n, sampling, generator, predicate) -> tuple[Tensor, Tensor]:
    xs, ns = [], []
    for piece, k in zip(pieces, _counts(pieces, n)):
        if k == 0:
            continue
        x, nrm = piece.sample(k, sampling, generator)
        keep = piece.keep(x)
        if predicate is not None:
            keep = keep & predicate(x).reshape(-1).bool()
        xs.append(x[keep])
        ns.append(nrm[keep])
    if not xs:
        raise ConfigError("no boundary points to sample: every piece has measure 0")
    return torch.cat(xs), torch.cat(ns)


class _BoxFace(Piece):
    """The face x_axis = lower or upper of a box."""

    def __init__(self, box: Box, axis: int, side: int):
        self.box, self.axis, self.side = box, axis, side
        v = box.variables[axis]
        self.name = f"{v}_{'max' if side else 'min'}"
        alias = _ALIASES.get(box.dim, {}).get((v, side))
        self.aliases = (alias,) if alias else ()
        size = box.upper - box.lower
        self.measure = float(torch.prod(torch.cat([size[:axis], size[axis + 1:]]))) if box.dim > 1 else 1.0

    def sample(self, n, sampling, generator):
        d, axis = self.box.dim, self.axis
        if d == 1:  # an end point: once on a mesh, else as often as asked (a point has no spread)
            face = torch.zeros(1 if sampling == "mesh" else n, 0, dtype=torch.float64)
        elif sampling == "mesh":
            m = max(1, round(n ** (1 / (d - 1))))
            # Lower edge in, upper edge out; in 2-D, mirroring every other face walks the boundary
            # round, so each corner appears exactly once.
            ticks = torch.linspace(0, 1, m + 1, dtype=torch.float64)[:-1]
            face = mesh_points([ticks] * (d - 1))
            face = 1.0 - face if (self.side == 1) != (axis % 2 == 0) else face
        else:
            face = unit_points(n, d - 1, sampling, generator)
        fixed = torch.full((len(face), 1), float(self.side), dtype=torch.float64)
        x = self.box._scale(torch.cat([face[:, :axis], fixed, face[:, axis:]], dim=1))
        normal = torch.zeros_like(x)
        normal[:, axis] = 1.0 if self.side else -1.0
        return x, normal


class Box(Domain):
    """The box [lower_1, upper_1] x ... x [lower_d, upper_d]; faces "<v>_min", "<v>_max" for each
    variable v (and "left"/"right", "bottom"/"top" in 1-D and 2-D).

    Args:
        lower: (d,) lower corner.
        upper: (d,) upper corner, componentwise > lower.
        variables: the coordinates' names (default x, y, z).
    """

    def __init__(self, lower: Sequence[float], upper: Sequence[float], variables: Sequence[str] | None = None):
        self.lower = torch.as_tensor(lower, dtype=torch.float64).reshape(-1)
        self.upper = torch.as_tensor(upper, dtype=torch.float64).reshape(-1)
        if self.lower.shape != self.upper.shape or not bool((self.lower < self.upper).all()):
            raise ConfigError(f"a box needs lower < upper componentwise, got {list(lower)}, {list(upper)}")
        self.dim = self.lower.numel()
        self.variables = _names(variables, self.dim)
        self._faces = [_BoxFace(self, a, s) for a in range(self.dim) for s in (0, 1)]

    def bounding_box(self):
        return self.lower, self.upper

    def sdf(self, x):
        centre, half = (self.lower + self.upper) / 2, (self.upper - self.lower) / 2
        q = (x - centre.to(x)).abs() - half.to(x)
        return q.clamp(min=0).norm(dim=1) + q.max(dim=1).values.clamp(max=0)

    def pieces(self):
        return self._faces

    def interior(self, n, sampling, generator):
        check_int(n, "number of interior points", minimum=1)
        return self._scale(unit_points(n, self.dim, sampling, generator))


def Interval(a: float, b: float, variable: str = "x") -> Box:
    """[a, b] as a 1-D box; its ends are "left" and "right"."""
    return Box([a], [b], (variable,))


class _Sphere(Piece):
    def __init__(self, ball: Ball):
        self.ball, self.name, self.aliases = ball, "sphere" if ball.dim != 2 else "circle", ("outer",)
        d, r = ball.dim, ball.radius
        self.measure = 2 * math.pi ** (d / 2) / math.gamma(d / 2) * r ** (d - 1)

    def sample(self, n, sampling, generator):
        d = self.ball.dim
        if d == 2 and sampling == "mesh":
            angle = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
        elif d == 2:
            angle = 2 * math.pi * unit_ticks(n, sampling, generator)
        if d == 2:
            normal = torch.stack([angle.cos(), angle.sin()], dim=1)
        elif sampling == "random":
            normal = torch.randn(n, d, generator=generator, dtype=torch.float64)
        else:  # Gaussian by the inverse CDF of low-discrepancy (or mesh) points: uniform on the sphere
            u = unit_points(n, d, "sobol" if sampling == "mesh" else sampling, generator).clamp(1e-12, 1 - 1e-12)
            normal = math.sqrt(2) * torch.erfinv(2 * u - 1)
        normal = normal / normal.norm(dim=1, keepdim=True)
        return self.ball.centre + self.ball.radius * normal, normal


class Ball(Domain):
    """The ball |x - centre| <= radius in any dimension; its boundary is "circle" (2-D) or "sphere",
    alias "outer".

    Args:
        centre: (d,) centre.
        radius: > 0.
        variables: the coordinates' names.
    """

    def __init__(self, centre: Sequence[float], radius: float, variables: Sequence[str] | None = None):
        self.centre = torch.as_tensor(centre, dtype=torch.float64).reshape(-1)
        if not radius > 0:
            raise ConfigError(f"a ball needs radius > 0, got {radius!r}")
        self.radius, self.dim = float(radius), self.centre.numel()
        self.variables = _names(variables, self.dim)

    def bounding_box(self):
        return self.centre - self.radius, self.centre + self.radius

    def sdf(self, x):
        return (x - self.centre.to(x)).norm(dim=1) - self.radius

    def pieces(self):
        return [_Sphere(self)]


def Disk(centre: Sequence[float], radius: float, variables: Sequence[str] | None = None) -> Ball:
    """A 2-D ball; its boundary is "circle"."""
    if len(centre) != 2:
        raise ConfigError(f"a disk needs a 2-D centre, got {list(centre)}")
    return Ball(centre, radius, variables)


class _Segment(Piece):
    def __init__(self, a: Tensor, b: Tensor, index: int):
        self.a, self.b, self.name = a, b, f"edge{index}"
        t = b - a
        self.measure = float(t.norm())
        self.normal = torch.stack([t[1], -t[0]]) / self.measure  # outward for counter-clockwise

    def sample(self, n, sampling, generator):
        s = ((torch.arange(n, dtype=torch.float64) + 0.5) / n if sampling == "mesh"
             else unit_ticks(n, sampling, generator))
        x = self.a + s[:, None] * (self.b - self.a)
        return x, self.normal.expand(len(x), 2).clone()


class Polygon(Domain):
    """A simple polygon in 2-D; edge i (vertex i to i + 1) is "edge<i>".

    Args:
        vertices: (k, 2) corners in order (either orientation; stored counter-clockwise).
        variables: the coordinates' names.
    """

    def __init__(self, vertices: Sequence[Sequence[float]], variables: Sequence[str] | None = None):
        v = torch.as_tensor(vertices, dtype=torch.float64)
        if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 3:
            raise ConfigError(f"a polygon needs at least 3 vertices (x, y), got {vertices!r}")
        area = 0.5 * float((v[:, 0] * v.roll(-1, 0)[:, 1] - v.roll(-1, 0)[:, 0] * v[:, 1]).sum())
        if abs(area) < 1e-14:
            raise ConfigError(f"a polygon needs a non-zero area, got vertices {vertices!r}")
        self.vertices = v if area > 0 else v.flip(0)
        self.dim, self.variables = 2, _names(variables, 2)
        w = self.vertices
        self._edges = [_Segment(w[i], w[(i + 1) % len(w)], i) for i in range(len(w))]

    def bounding_box(self):
        return self.vertices.min(dim=0).values, self.vertices.max(dim=0).values

    def sdf(self, x):
        a = self.vertices.to(x)  # (k, 2)
        b = a.roll(-1, 0)
        ab, ap = b - a, x[:, None, :] - a  # (k, 2), (N, k, 2)
        t = ((ap * ab).sum(-1) / (ab * ab).sum(-1)).clamp(0, 1)  # (N, k)
        dist = (ap - t[..., None] * ab).norm(dim=-1).min(dim=1).values  # (N,)
        # even-odd rule: a ray towards +x crosses the edges an odd number of times from inside
        ya, yb = a[:, 1], b[:, 1]
        py, px = x[:, None, 1], x[:, None, 0]
        straddle = (ya > py) != (yb > py)
        cross_x = a[:, 0] + (py - ya) * (b[:, 0] - a[:, 0]) / torch.where(yb == ya, torch.ones_like(yb), yb - ya)
        inside = (straddle & (px < cross_x)).sum(dim=1) % 2 == 1
        return torch.where(inside, -dist, dist)

    def pieces(self):
        return self._edges


def _names(variables, d: int) -> tuple[str, ...]:
    names = default_names(d) if variables is None else tuple(str(v) for v in variables)
    if len(names) != d or len(set(names)) != d:
        raise ConfigError(f"a {d}-D domain needs {d} distinct variable names, got {list(names)}")
    return names
