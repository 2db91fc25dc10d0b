"""The classical reference solvers (kanpde.pde.references) and their HDF5 cache."""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from kanpde.pde.references.base import Reference
from kanpde.pde.references.burgers import burgers, cole_hopf
from kanpde.pde.references.cache import cache_path, cached, load, save
from kanpde.pde.references.cavity import cavity, solve_streamfunction
from kanpde.pde.references.poisson_fd import lshape, solve_dirichlet
from kanpde.pde.references.spectral import _allen_cahn_u0, _kdv_u0, solve_allen_cahn, solve_kdv

NU = 0.01 / np.pi


def slope(h, err):
    return np.polyfit(np.log(h), np.log(err), 1)[0]


# ---------------------------------------------------------------- Reference


def _box_reference():
    x = np.linspace(0.0, 1.0, 21)
    t = np.linspace(0.0, 2.0, 21)
    xx, tt = np.meshgrid(x, t, indexing="ij")
    values = np.stack([np.sin(xx) * np.exp(-tt), xx * tt])
    return Reference(("x", "t"), (x, t), values, ("u", "v"), {"solver": "test"})


def test_reference_points_and_cubic_interpolation():
    ref = _box_reference()
    pts, vals = ref.points()
    assert pts.shape == (21 * 21, 2) and vals.shape == (21 * 21, 2)
    assert np.allclose(ref(pts), vals, atol=1e-12)
    q = np.random.default_rng(0).uniform([0, 0], [1, 2], size=(200, 2))
    exact = np.stack([np.sin(q[:, 0]) * np.exp(-q[:, 1]), q[:, 0] * q[:, 1]], axis=1)
    assert np.abs(ref(q) - exact).max() < 1e-5  # cubic, h = 0.05 and 0.1
    assert np.isnan(ref(np.array([[1.5, 0.5]]))).all()
    corners = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 2.0], [1.0, 0.0]])
    assert np.allclose(ref(corners), ref.values[:, [0, -1, 0, -1], [0, -1, -1, 0]].T, atol=1e-12)


def test_reference_validates_shapes():
    x = np.linspace(0, 1, 5)
    with pytest.raises(ValueError, match="values"):
        Reference(("x",), (x,), np.zeros((1, 4)), ("u",), {})
    with pytest.raises(ValueError, match="increasing"):
        Reference(("x",), (x[::-1],), np.zeros((1, 5)), ("u",), {})
    with pytest.raises(ValueError, match="expected"):
        Reference(("x",), (x,), np.zeros((1, 5)), ("u",), {})(np.zeros((3, 2)))


def test_reference_with_holes_interpolates_locally():
    """On an L-shaped grid (NaN in the removed square) a smooth field is interpolated to O(h^4)
    from NaN-free local stencils; points in the removed square are NaN."""
    x = np.linspace(-1, 1, 41)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    f = np.sin(2 * xx) * np.cos(yy)
    f[(xx > 1e-12) & (yy > 1e-12)] = np.nan
    ref = Reference(("x", "y"), (x, x), f[None], ("u",), {})
    q = np.random.default_rng(1).uniform(-1, 1, size=(2000, 2))
    inside = ~((q[:, 0] > 0) & (q[:, 1] > 0))
    got = ref(q)[:, 0]
    assert np.isnan(got[~inside]).all() and not np.isnan(got[inside]).any()
    assert np.abs(got[inside] - np.sin(2 * q[inside, 0]) * np.cos(q[inside, 1])).max() < 2e-5


# ---------------------------------------------------------------- Burgers


def test_burgers_basdevant_slope():
    """Basdevant et al. (1986): u_x(0, 1.6037/pi) = -152.005 for nu = 0.01/pi."""
    _, ux = cole_hopf(np.array([0.0]), 1.6037 / np.pi, NU, derivative=True)
    assert abs(ux[0] / -152.005 - 1) < 1e-3
    # the analytic derivative agrees with a central difference of u
    d = 1e-6
    u = cole_hopf(np.array([-d, d]), 0.4, NU)
    assert abs((u[1] - u[0]) / (2 * d) - cole_hopf(np.array([0.0]), 0.4, NU, derivative=True)[1][0]) < 1e-4


def test_burgers_quadrature_converges():
    x = np.linspace(-1, 1, 129)
    best = cole_hopf(x, 1.0, NU, 800)
    errors = [np.abs(cole_hopf(x, 1.0, NU, q) - best).max() for q in (20, 30, 40, 60, 200)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-12


def test_burgers_grid_symmetry_and_boundary():
    ref = burgers(nx=65, nt=11)
    assert ref.values.shape == (1, 65, 11) and ref.variables == ("x", "t") and ref.outputs == ("u",)
    u = ref.values[0]
    x = ref.axes[0]
    assert np.allclose(u[:, 0], -np.sin(np.pi * x))
    assert np.abs(u + u[::-1]).max() < 1e-12  # u(-x, t) = -u(x, t)
    assert np.abs(u[[0, -1]]).max() < 1e-12
    assert np.abs(u).max() <= 1.0 + 1e-12


@pytest.mark.parametrize("kwargs, match", [({"nu": -1.0}, "nu"), ({"nx": 1}, "nx"), ({"nt": 2.5}, "nt"),
                                           ({"quad_points": 0}, "quad_points")])
def test_burgers_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        burgers(**kwargs)


# ---------------------------------------------------------------- spectral (Allen-Cahn, KdV)


def test_allen_cahn_fourth_order_in_time():
    run = lambda dt: solve_allen_cahn(_allen_cahn_u0, eps=1e-4, a=5.0, nx=256, dt=dt, t_end=0.1,
                                      nt_out=2).values[0, :, -1]
    best = run(0.1 / 256)
    dts = [0.02, 0.01, 0.005, 0.0025]
    order = slope(dts, [np.abs(run(dt) - best).max() for dt in dts])
    assert 3.5 <= order <= 4.5


def test_kdv_fourth_order_in_time():
    run = lambda dt: solve_kdv(_kdv_u0, delta=0.022, nx=256, dt=dt, t_end=0.2, nt_out=2).values[0, :, -1]
    best = run(0.2 / 2048)
    dts = [0.004, 0.002, 0.001, 0.0005]
    order = slope(dts, [np.abs(run(dt) - best).max() for dt in dts])
    assert 3.5 <= order <= 4.5


def test_kdv_spectral_convergence_in_space():
    run = lambda nx: solve_kdv(_kdv_u0, delta=0.022, nx=nx, dt=1e-3, t_end=0.4, nt_out=2).values[0, :-1, -1]
    best = run(512)
    errors = [np.abs(run(nx) - best[:: 512 // nx]).max() for nx in (64, 128, 256)]
    ratios = [b / a for a, b in zip(errors, errors[1:])]
    assert ratios[1] < ratios[0] < 0.1  # faster than any fixed algebraic order
    assert errors[-1] < 1e-5


def test_allen_cahn_constant_state_is_logistic():
    a = 5.0
    for c in (0.3, -0.6):
        ref = solve_allen_cahn(lambda x: np.full_like(x, c), eps=1e-4, a=a, nx=16, dt=1e-3, t_end=1.0, nt_out=11)
        t = ref.axes[1]
        exact = c * np.exp(a * t) / np.sqrt(1 - c**2 + c**2 * np.exp(2 * a * t))
        assert np.abs(ref.values[0] - exact).max() < 1e-9


def test_kdv_soliton():
    """u = 3c sech^2(sqrt(c)/(2 delta) (x - x0 - c t)); its periodic images are ~1e-14 small."""
    delta, c, x0 = 0.022, 0.5, -0.3
    exact = lambda x, t: 3 * c / np.cosh(np.sqrt(c) / (2 * delta) * (x - x0 - c * t)) ** 2
    ref = solve_kdv(lambda x: exact(x, 0.0), delta=delta, nx=512, dt=2.5e-4, t_end=0.1, nt_out=3)
    x, t = ref.axes
    assert np.abs(ref.values[0] - exact(x[:, None], t[None, :])).max() < 1e-6


def test_spectral_layout_and_checks():
    ref = solve_allen_cahn(_allen_cahn_u0, eps=1e-4, a=5.0, nx=64, dt=0.01, t_end=0.1, nt_out=3)
    x, t = ref.axes
    assert ref.values.shape == (1, 65, 3) and x[0] == -1.0 and x[-1] == 1.0
    assert np.array_equal(ref.values[0, 0], ref.values[0, -1])  # periodic copy
    assert np.allclose(t, [0.0, 0.05, 0.1]) and np.allclose(ref.values[0, :, 0], x**2 * np.cos(np.pi * x))
    with pytest.raises(ValueError, match="dt"):
        solve_kdv(_kdv_u0, delta=0.022, nx=64, dt=0.003, t_end=0.1, nt_out=3)
    with pytest.raises(ValueError, match="nx"):
        solve_kdv(_kdv_u0, delta=0.022, nx=63, dt=0.01, t_end=0.1, nt_out=3)
    with pytest.raises(ValueError, match="eps"):
        solve_allen_cahn(_allen_cahn_u0, eps=0.0, a=5.0, nx=64, dt=0.01, t_end=0.1, nt_out=3)


# ---------------------------------------------------------------- Poisson on the L-shape


def test_lshape_second_order_for_smooth_solution():
    exact = lambda x, y: np.sin(np.pi * x) * np.sin(np.pi * y) + x * np.exp(y)
    source = lambda x, y: 2 * np.pi**2 * np.sin(np.pi * x) * np.sin(np.pi * y) - x * np.exp(y)
    hs, errors = [], []
    for n in (33, 65, 129):
        x, u = solve_dirichlet(source, exact, n)
        xx, yy = np.meshgrid(x, x, indexing="ij")
        hs.append(x[1] - x[0])
        errors.append(np.nanmax(np.abs(u - exact(xx, yy))))
    assert 1.8 <= slope(hs, errors) <= 2.2


def test_lshape_layout():
    ref = lshape(n=65, singular_correction=False)
    x, y = ref.axes
    u = ref.values[0]
    outside = (x[:, None] > 0) & (y[None, :] > 0)
    assert np.isnan(u[outside]).all() and not np.isnan(u[~outside]).any()
    assert np.abs(u[0]).max() == 0 and np.abs(u[:, 32][x >= 0]).max() == 0  # outer and corner edges
    assert (u[~outside & (np.abs(x[:, None]) < 1) & (np.abs(y[None, :]) < 1)] >= 0).all()
    assert np.isnan(ref(np.array([[0.5, 0.5]]))).all() and not np.isnan(ref(np.array([[-0.5, 0.5]]))).any()
    with pytest.raises(ValueError, match="odd"):
        lshape(n=64)
    with pytest.raises(ValueError, match="divisible by 4"):
        lshape(n=67)


def test_lshape_point_value_converges():
    """At (-1/2, -1/2): plain differences shrink like h^(4/3); the corner-corrected ones like h^2 and far below."""
    point = lambda ref: ref.values[0, (len(ref.axes[0]) - 1) // 4, (len(ref.axes[0]) - 1) // 4]
    plain = [point(lshape(n=n, singular_correction=False)) for n in (65, 129, 257)]
    corrected = [point(lshape(n=n)) for n in (129, 257, 513)]
    dp, dc = np.abs(np.diff(plain)), np.abs(np.diff(corrected))
    assert dp[1] < dp[0] / 2 and dc[1] < dc[0] / 3
    assert dc[1] < dp[1] / 50
    assert abs(corrected[-1] - 0.1310529) < 1e-6


# ---------------------------------------------------------------- lid-driven cavity

# Ghia, Ghia & Shin (1982), Re = 100: u on x = 0.5 and v on y = 0.5 (Tables I and II)
GHIA_Y = [0.9766, 0.9688, 0.9609, 0.9531, 0.8516, 0.7344, 0.6172, 0.5, 0.4531, 0.2813, 0.1719, 0.1016, 0.0703,
          0.0625, 0.0547]
GHIA_U = [0.84123, 0.78871, 0.73722, 0.68717, 0.23151, 0.00332, -0.13641, -0.20581, -0.21090, -0.15662,
          -0.10150, -0.06434, -0.04775, -0.04192, -0.03717]
GHIA_X = [0.9688, 0.9609, 0.9531, 0.9453, 0.9063, 0.8594, 0.8047, 0.5, 0.2344, 0.2266, 0.1563, 0.0938, 0.0781,
          0.0703, 0.0625]
GHIA_V = [-0.05906, -0.07391, -0.08864, -0.10313, -0.16914, -0.22445, -0.24533, 0.05454, 0.17527, 0.17507,
          0.16077, 0.12317, 0.10890, 0.10091, 0.09233]


@pytest.fixture(scope="module")
def cavity65():
    return cavity(re=100.0, n=65)


def test_cavity_centrelines_match_ghia(cavity65):
    """Within 1% of the lid speed on a 65 x 65 grid (Richardson-corrected from 33 x 33). Ghia's own
    values are off by up to ~0.008 (e.g. min v: ~ -0.2536 on fine grids against -0.24533)."""
    u = cavity65(np.column_stack([np.full(len(GHIA_Y), 0.5), GHIA_Y]))[:, 0]
    v = cavity65(np.column_stack([GHIA_X, np.full(len(GHIA_X), 0.5)]))[:, 1]
    assert np.abs(u - GHIA_U).max() < 0.01
    assert np.abs(v - GHIA_V).max() < 0.01
    assert abs(u[7] / GHIA_U[7] - 1) < 0.02 and abs(u[8] / GHIA_U[8] - 1) < 0.02  # u(0.5, 0.5), min u


def test_cavity_extrema_match_botella_peyret(cavity65):
    """Centreline extrema against the spectral benchmark (Botella & Peyret 1998, Re = 100):
    min u on x = 0.5 = -0.2140424 (y = 0.4581), max v on y = 0.5 = 0.1795728 (x = 0.2370),
    min v = -0.2538030 (x = 0.8104). Measured: 4e-4 relative at n = 65, 7e-5 at 129, 8e-6 at 257."""
    s = np.linspace(0.0, 1.0, 4001)
    u = cavity65(np.column_stack([np.full_like(s, 0.5), s]))[:, 0]
    v = cavity65(np.column_stack([s, np.full_like(s, 0.5)]))[:, 1]
    got = np.array([u.min(), v.max(), v.min()])
    assert np.abs(got / np.array([-0.2140424, 0.1795728, -0.2538030]) - 1).max() < 1e-3
    assert np.abs(np.array([s[u.argmin()], s[v.argmax()], s[v.argmin()]]) - [0.4581, 0.2370, 0.8104]).max() < 2e-3


def test_cavity_layout_and_divergence(cavity65):
    assert cavity65.outputs == ("u", "v", "p") and cavity65.variables == ("x", "y")
    assert cavity65.values.shape == (3, 65, 65)
    u, v, p = cavity65.values
    assert p[0, 0] == 0.0
    assert np.allclose(u[1:-1, -1], 1.0) and np.abs(u[:, :-1][[0, -1]]).max() == 0 and np.abs(v[[0, -1]]).max() == 0
    def div(u, v):
        h = 1 / (len(u) - 1)
        return (u[2:, 1:-1] - u[:-2, 1:-1]) / (2 * h) + (v[1:-1, 2:] - v[1:-1, :-2]) / (2 * h)

    raw = cavity(re=100.0, n=33, richardson=False).values
    assert np.abs(div(raw[0], raw[1])).max() < 1e-10  # exactly discretely solenoidal
    below = div(u, v)[:, :32]  # with the Richardson correction: small away from the lid (y < 0.5)
    assert np.sqrt(np.mean(below**2)) < 2e-3


def test_cavity_second_order_convergence():
    """psi(0.625, 0.75) on 33, 65, 129 grids: successive differences fall ~4x."""
    values = []
    for n in (33, 65, 129):
        _, psi, _, _ = solve_streamfunction(n, 100.0)
        values.append(psi[5 * (n - 1) // 8, 3 * (n - 1) // 4])
    d = np.abs(np.diff(values))
    assert 3.5 < d[0] / d[1] < 4.7
    assert abs(values[-1] + 0.1033) < 5e-4


def test_cavity_rejects_bad_settings():
    with pytest.raises(ValueError, match="re"):
        cavity(re=-1.0)
    with pytest.raises(ValueError, match="n"):
        cavity(n=64)


# ---------------------------------------------------------------- cache


def _tiny(scale=1.0):
    x = np.linspace(0, 1, 5)
    return Reference(("x",), (x,), scale * x[None] ** 2, ("u",), {"solver": "tiny", "scale": scale})


def _slow_tiny(calls):
    (Path(calls) / str(os.getpid())).touch()  # one file per process that computed
    time.sleep(0.5)
    return _tiny()


def _cache_worker(folder, calls, start, results):
    start.wait()
    ref = cached("tiny", {"scale": 1.0}, functools.partial(_slow_tiny, calls), cache_dir=folder)
    results.put(float(ref.values.sum()))


def _cache_files(folder):
    """The files of a cache folder but its lock files (`kanpde.cache` leaves those in place)."""
    return [p for p in Path(folder).iterdir() if p.suffix != ".lock"]


def test_cache_reads_without_computing(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or _tiny()
    first = cached("tiny", {"scale": 1.0, "grid": (5,)}, compute, cache_dir=tmp_path)
    second = cached("tiny", {"scale": 1.0, "grid": (5,)}, compute, cache_dir=tmp_path)
    assert len(calls) == 1
    assert np.array_equal(first.values, second.values) and second.settings == {"solver": "tiny", "scale": 1.0}
    path = cache_path("tiny", {"scale": 1.0, "grid": [5]}, tmp_path)
    assert path.exists() and path.name.startswith("tiny-") and len(path.stem) == len("tiny-") + 16
    cached("tiny", {"scale": 2.0}, lambda: calls.append(1) or _tiny(2.0), cache_dir=tmp_path)
    assert len(calls) == 2 and len(_cache_files(tmp_path)) == 2


def test_cache_default_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path))
    assert cache_path("tiny", {}).parent == tmp_path / "references"


@pytest.mark.parametrize("damage", ["truncated", "foreign", "garbage"])
def test_cache_rebuilds_bad_files(tmp_path, caplog, damage):
    settings = {"scale": 1.0}
    path = cache_path("tiny", settings, tmp_path)
    cached("tiny", settings, _tiny, cache_dir=tmp_path)
    if damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        save(path, _tiny(3.0), _attrs={"kind": "tiny", "settings": '{"scale":3.0}'})
    else:
        path.write_bytes(b"not an hdf5 file")
    calls = []
    with caplog.at_level(logging.WARNING):
        ref = cached("tiny", settings, lambda: calls.append(1) or _tiny(), cache_dir=tmp_path)
    assert calls == [1] and str(path) in caplog.text
    assert np.array_equal(ref.values, _tiny().values)
    assert np.array_equal(load(path, kind="tiny", settings=settings).values, _tiny().values)
    assert [p.name for p in _cache_files(tmp_path)] == [path.name]


def test_cache_rejects_a_missing_dataset(tmp_path, caplog):
    settings = {"scale": 1.0}
    path = cache_path("tiny", settings, tmp_path)
    cached("tiny", settings, _tiny, cache_dir=tmp_path)
    with h5py.File(path, "a") as f:
        del f["axis0"]
    with caplog.at_level(logging.WARNING):
        cached("tiny", settings, _tiny, cache_dir=tmp_path)
    assert str(path) in caplog.text
    load(path, kind="tiny", settings=settings)


def test_cache_two_processes_at_once(tmp_path):
    """Two processes asking at once: one computes, the other waits and reads its file."""
    folder, calls = tmp_path / "cache", tmp_path / "calls"
    calls.mkdir()
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2, timeout=60), ctx.Queue()  # both ask once both are ready
    workers = [ctx.Process(target=_cache_worker, args=(str(folder), str(calls), start, results)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert [results.get(timeout=5) for _ in workers] == [float(_tiny().values.sum())] * 2
    assert len(list(calls.iterdir())) == 1
    files = _cache_files(folder)
    assert len(files) == 1 and files[0].suffix == ".h5"
    assert np.array_equal(load(files[0], kind="tiny", settings={"scale": 1.0}).values, _tiny().values)
