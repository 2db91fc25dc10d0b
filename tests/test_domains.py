"""Domains and sampling (kanpde.pde.domains, csg, timedomain, sampling): points inside, points on
the boundary, unit outward normals, named parts, shares by measure, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from kanpde.pde.csg import Difference, Intersection, Union
from kanpde.pde.domains import Ball, Box, Disk, Interval, Polygon
from kanpde.pde.sampling import SAMPLINGS, unit_points
from kanpde.pde.timedomain import TimeDomain
from kanpde.validate import ConfigError

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lshape():
    return Difference(Box([-1.0, -1.0], [1.0, 1.0]), Box([0.0, 0.0], [1.0, 1.0]))


DOMAINS = {
    "box3d": lambda: Box([0.0, -1.0, 2.0], [1.0, 1.0, 3.0]),
    "disk": lambda: Disk([0.5, -0.2], 0.7),
    "ball3d": lambda: Ball([0.0, 0.0, 0.0], 1.0),
    "triangle": lambda: Polygon([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
    "lshape": lshape,
    "union": lambda: Union(Disk([0.0, 0.0], 1.0), Disk([1.0, 0.0], 1.0)),
    "intersection": lambda: Intersection(Box([-1.0, -1.0], [1.0, 1.0]), Disk([1.0, 1.0], 1.2)),
    "space_time": lambda: TimeDomain(Disk([0.0, 0.0], 1.0), 0.0, 2.0),
}


def assert_outward_unit_normals(domain, x, normal, step=1e-6, strict=True):
    """Unit length, and a small step along n leaves the domain while one against it enters.
    Not `strict` (mesh points include corners and the edges of a box's faces): no step ends on
    the wrong side, and most end strictly on the right one."""
    torch.testing.assert_close(normal.norm(dim=1), torch.ones(len(x), dtype=F64), rtol=0, atol=1e-12)
    out, inward = domain.sdf(x + step * normal), domain.sdf(x - step * normal)
    if strict:
        assert bool((out > 0).all()) and bool((inward < 0).all())
    else:
        assert bool((out >= -1e-12).all()) and bool((inward <= 1e-12).all())
        assert float((out > 0).double().mean()) > 0.9 and float((inward < 0).double().mean()) > 0.6


@pytest.mark.parametrize("name", sorted(DOMAINS))
@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_interior_points_lie_inside(name, sampling):
    """Every sampling method gives points strictly inside; n exactly except for the mesh (within 25 %)."""
    domain = DOMAINS[name]()
    x = domain.interior(500, sampling, gen())
    assert x.dtype == F64 and x.shape[1] == domain.dim
    assert bool(domain.contains(x, closed=False).all())
    if sampling == "mesh":
        assert 375 <= len(x) <= 625
    else:
        assert len(x) == 500


@pytest.mark.parametrize("name", sorted(DOMAINS))
@pytest.mark.parametrize("sampling", ["random", "mesh", "sobol"])
def test_boundary_points_on_boundary_with_outward_normals(name, sampling):
    domain = DOMAINS[name]()
    x, normal = domain.boundary(400, sampling, gen(1))
    assert len(x) >= 300
    assert float(domain.sdf(x).abs().max()) < 1e-9
    assert_outward_unit_normals(domain, x, normal, strict=sampling != "mesh")


def test_disk_normals_are_radial():
    disk = Disk([0.5, -0.2], 0.7)
    x, normal = disk.boundary(100, "random", gen(2))
    torch.testing.assert_close(normal, (x - disk.centre) / 0.7, rtol=0, atol=1e-14)


def test_lshape_boundary_shares_by_length_and_corners():
    """The L-shape's 8 units of boundary get points in proportion to length (the two inner edges,
    2 of 8, about a quarter); points near each of its six corners have outward normals; the
    removed square's edges on the outer box (x = 1, y = 1 above 0) carry no points."""
    domain = lshape()
    x, normal = domain.boundary(8000, "random", gen(3))
    inner = ((x[:, 0].abs() < 1e-12) & (x[:, 1] > 0)) | ((x[:, 1].abs() < 1e-12) & (x[:, 0] > 0))
    assert abs(float(inner.double().mean()) - 0.25) < 0.02
    assert not bool(((x[:, 0] > 1 - 1e-12) & (x[:, 1] > 1e-12)).any())
    assert not bool(((x[:, 1] > 1 - 1e-12) & (x[:, 0] > 1e-12)).any())
    for corner in ([-1.0, -1.0], [1.0, -1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [-1.0, 1.0]):
        near = (x - torch.tensor(corner, dtype=F64)).norm(dim=1) < 0.05
        assert int(near.sum()) > 0
        assert_outward_unit_normals(domain, x[near], normal[near], step=1e-4)
    # the re-entrant corner's two edges: normals point into the removed square
    at_x0 = (x[:, 0].abs() < 1e-12) & (x[:, 1] > 0)
    torch.testing.assert_close(normal[at_x0], torch.tensor([[1.0, 0.0]], dtype=F64).expand(int(at_x0.sum()), 2))


def test_named_parts_and_predicates():
    box = Box([0.0, 0.0], [2.0, 1.0])
    x, normal = box.boundary(50, "random", gen(4), where="left")
    assert len(x) == 50 and bool((x[:, 0] == 0).all())
    torch.testing.assert_close(normal, torch.tensor([[-1.0, 0.0]], dtype=F64).expand(50, 2))
    x, _ = box.boundary(60, "random", gen(4), where=["top", "y_min"])
    assert bool(((x[:, 1] == 0) | (x[:, 1] == 1)).all()) and len(x) == 60
    x, _ = box.boundary(80, "random", gen(4), where=lambda p: p[:, 0] > 1.5)
    assert len(x) == 80 and bool((x[:, 0] > 1.5).all())
    with pytest.raises(ConfigError, match="'front' is not a part of this domain; allowed: x_min, left"):
        box.boundary(10, "random", gen(), where="front")
    assert Disk([0.0, 0.0], 1.0).part_names() == ["circle", "outer"]


def test_box_boundary_shares_by_face_area():
    """A 2 x 1 box: the two long faces hold 2/3 of the points."""
    x, _ = Box([0.0, 0.0], [2.0, 1.0]).boundary(600, "random", gen(5))
    long_faces = (x[:, 1] == 0) | (x[:, 1] == 1)
    assert int(long_faces.sum()) == 400


def test_time_domain_parts():
    """Initial slice at t0 inside the space domain; the lateral boundary at the two ends for all
    times; interior points inside; named spatial parts pass through."""
    domain = TimeDomain(Interval(-1.0, 1.0), 0.0, 0.5)
    assert domain.variables == ("x", "t")
    assert domain.part_names()[:3] == ["initial", "final", "x_min"]
    x, normal = domain.boundary(40, "sobol", gen(6), where="initial")
    assert bool((x[:, 1] == 0).all()) and bool((x[:, 0].abs() < 1).all())
    torch.testing.assert_close(normal, torch.tensor([[0.0, -1.0]], dtype=F64).expand(40, 2))
    x, normal = domain.boundary(40, "random", gen(6))
    assert bool((x[:, 0].abs() == 1).all()) and bool(((x[:, 1] >= 0) & (x[:, 1] <= 0.5)).all())
    torch.testing.assert_close(normal[:, 0], x[:, 0])
    x, _ = domain.boundary(30, "mesh", gen(6), where="right")
    assert bool((x[:, 0] == 1).all()) and len(x) == 30
    t = domain.interior(300, "lhs", gen(6))[:, 1]
    assert float(t.min()) > 0 and float(t.max()) < 0.5


def test_sampling_is_reproducible_and_stratified():
    """Same seed, same points; Latin hypercube: one point in each of the n strata of every axis;
    a scrambled Sobol set fills the square more evenly than random points (star discrepancy)."""
    for sampling in SAMPLINGS:
        assert torch.equal(unit_points(64, 2, sampling, gen(7)), unit_points(64, 2, sampling, gen(7)))
    assert not torch.equal(unit_points(64, 2, "sobol", gen(7)), unit_points(64, 2, "sobol", gen(8)))
    lhs = unit_points(50, 3, "lhs", gen(9))
    for axis in range(3):
        assert sorted((lhs[:, axis] * 50).floor().long().tolist()) == list(range(50))
    from scipy.stats import qmc

    d_sobol = qmc.discrepancy(unit_points(256, 2, "sobol", gen(10)).numpy())
    d_random = qmc.discrepancy(unit_points(256, 2, "random", gen(10)).numpy())
    assert d_sobol < d_random / 3


def test_bad_domains_fail_in_one_line():
    with pytest.raises(ConfigError, match="radius > 0"):
        Ball([0.0], -1.0)
    with pytest.raises(ConfigError, match="at least 3 vertices"):
        Polygon([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ConfigError, match="t1 > t0"):
        TimeDomain(Interval(0.0, 1.0), 1.0, 1.0)
    with pytest.raises(ConfigError, match="lower < upper"):
        Box([0.0, 1.0], [1.0, 1.0])
    assert math.isclose(Disk([0.0, 0.0], 2.0).pieces()[0].measure, 4 * math.pi)
