"""Tidying a logit formula on labelled data: term selection and rounding of function arguments,
against labels from a known boundary (the MAAM mobility edge E + e^p - lam cosh p = 0)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from kanpde.interpret.discover import compare
from kanpde.interpret.tidy import accuracy, bce, select_terms, snap_arguments, snap_coefficients, term_coefficients

INPUTS = ("lam", "p", "E")
lam, p, E = sp.symbols(INPUTS)
THEORY = E + sp.exp(p) - lam * sp.cosh(p)


def _data(n: int = 3000, rate: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """States uniform in lam (0.5, 4), p (0.5, 2.5), E (-4, 6); label 1 where
    E + e^{rate p} - lam cosh(rate p) > 0, 2 % of labels flipped."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(0.5, 4, n), rng.uniform(0.5, 2.5, n), rng.uniform(-4, 6, n)])
    logit = x[:, 2] + np.exp(rate * x[:, 1]) - x[:, 0] * np.cosh(rate * x[:, 1])
    y = (logit > 0).astype(float)
    flip = rng.random(n) < 0.02
    return x, np.where(flip, 1 - y, y)


def test_select_terms_drops_the_terms_the_boundary_does_not_need():
    """From the theory plus three distractors that a fit uses a little (lam^2, E lam, 1), with a
    wrong rate inside exp and cosh, elimination keeps exactly the theory's three terms."""
    x, y = _data()
    f = sp.Float
    start = (f(5.1) * E + f(5.3) * sp.exp(f(0.97) * p) - f(5.2) * lam * sp.cosh(f(0.97) * p)
             + f(0.3) * lam**2 - f(0.4) * E * lam + f(0.8))
    kept = select_terms(start, INPUTS, x, y, tol=0.005)
    assert len(sp.Add.make_args(kept)) == 3
    assert accuracy(kept, INPUTS, x, y) >= accuracy(start, INPUTS, x, y) - 0.005
    snapped = snap_arguments(kept, INPUTS, x, y)
    assert snapped.has(sp.cosh(p)) and snapped.has(sp.exp(p))  # the rate rounds to exactly 1
    cmp = compare(snap_coefficients(snapped, INPUTS, x, y), THEORY)
    assert cmp["max_rel_err"] < 0.02 and cmp["extra"] == 0


def test_select_terms_keeps_every_needed_term():
    """The theory itself: dropping any of its terms costs far more than 0.5 points."""
    x, y = _data()
    start = sp.Float(5.0) * THEORY
    assert set(term_coefficients(select_terms(start, INPUTS, x, y, tol=0.005))) == set(term_coefficients(start))


def test_snap_arguments_keeps_a_rate_that_rounding_would_hurt():
    """True rate 1.5, started at 1.52: rounding to a whole number would move the boundary a lot,
    so with digits 0 the constant stays (refitted, the cross-entropy no worse); with digits 1 it
    becomes exactly 3/2."""
    x, y = _data(rate=1.5)
    start = sp.Float(5.0) * (E + sp.exp(sp.Float(1.52) * p) - lam * sp.cosh(sp.Float(1.52) * p))
    kept = snap_arguments(start, INPUTS, x, y, digits=0)
    rates = [float(c) for g in kept.atoms(sp.cosh) for c in g.atoms(sp.Float)]
    assert len(rates) == 1 and abs(rates[0] - 1.5) < 0.05
    assert bce(kept, INPUTS, x, y) <= bce(start, INPUTS, x, y) + 1e-12
    assert snap_arguments(start, INPUTS, x, y, digits=1).has(sp.cosh(3 * p / 2))


def test_select_terms_falls_back_to_elimination_past_the_exhaustive_size():
    """With subsets searched only up to 1 term (none classifies well alone), backward
    elimination from all six terms still ends at the theory's three."""
    x, y = _data()
    f = sp.Float
    start = (f(5.0) * E + f(5.0) * sp.exp(p) - f(5.0) * lam * sp.cosh(p)
             + f(0.3) * lam**2 - f(0.4) * E * lam + f(0.8))
    kept = select_terms(start, INPUTS, x, y, tol=0.005, exhaustive=1)
    assert set(term_coefficients(kept)) == {E, sp.exp(p), lam * sp.cosh(p)}

