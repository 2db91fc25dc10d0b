"""Shared fixtures: the composed and shrunk Hydra config, one torch thread, dtype hygiene."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def points(n: int, d: int, seed: int, half_width: float = 1.5) -> torch.Tensor:
    """(n, d) uniform float64 points in [-half_width, half_width]^d (partly outside a [-1, 1] grid)."""
    return (torch.rand(n, d, generator=gen(seed), dtype=F64) * 2 - 1) * half_width


def assert_jets_equal(fast, slow, rtol: float = 1e-10) -> None:
    """Two jets' value, gradient and second channels agree to `rtol` relative to each tensor's
    size; an empty channel is skipped, a ~0 one fails (the comparison would be vacuous)."""
    assert fast.mode == slow.mode
    for name in ("value", "grad", "second"):
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.shape == b.shape, name
        if b.numel() == 0:
            continue
        scale = float(b.detach().abs().max())
        assert scale > 1e-3, f"{name} is ~0, the comparison would be vacuous"
        torch.testing.assert_close(a, b, rtol=0, atol=rtol * scale, msg=name)


# Two optimiser steps: one L-BFGS step on grid 3 (two iterations), one Adam step on grid 5.
TINY_STAGES = ("optim.stages=[{optimizer: lbfgs, steps: 1, grid: 3, max_iter: 2},"
               " {optimizer: adam, steps: 1, lr: 1e-3, grid: 5}]")
SHRINK = [
    "problem.n_interior=64",
    "problem.n_boundary=16",
    "problem.n_test=100",
    "eval_mesh=5",
    "progress=false",
    "device=cpu",
    "threads=1",  # not 0 (free cores): tiny tensors, see _one_thread
    TINY_STAGES,
]


def compose_config(overrides=(), shrink: bool = True):
    """The installed config (package `kanpde.conf`) composed with `overrides`.

    Args:
        overrides: Hydra override strings, applied after the shrinking ones.
        shrink: prepend `SHRINK` (tiny point counts, two optimiser steps, no progress bar).

    Returns:
        The composed DictConfig (without the `hydra` node).
    """
    with initialize_config_module(config_module="kanpde.conf", version_base="1.3"):
        return compose(config_name="config", overrides=[*(SHRINK if shrink else []), *overrides])


@pytest.fixture
def tiny_config():
    """Factory fixture: `tiny_config(*overrides)` composes the shrunk config."""
    return lambda *overrides: compose_config(overrides)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Run torch single-threaded: the tests' tensors are tiny, and on a small, busy machine
    intra-op threads cost far more in synchronisation than they save (10x here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _keep_default_dtype():
    """Restore torch's default dtype after every test and fail a test that leaks a change."""
    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    torch.set_default_dtype(before)
    assert after == before, f"test changed torch's default dtype to {after}"
