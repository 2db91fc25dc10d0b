"""Reference solutions computed by classical solvers, cached in HDF5 keyed by their settings.

Each solver returns a `Reference` (values on a tensor grid plus interpolation) and takes only
keyword settings, so ``cached(kind, settings, lambda: solver(**settings))`` stores it safely:

- `burgers`: viscous Burgers, Cole-Hopf integral by Gauss-Hermite quadrature (round-off accurate).
- `allen_cahn`, `kdv`: 1-D periodic, Fourier pseudo-spectral + ETDRK4 (fourth order in time).
- `lshape`: Poisson on the L-shape, 5-point finite differences with a corner-singularity correction.
- `cavity`: steady lid-driven cavity, streamfunction-vorticity finite differences, Newton, Richardson.

Only numpy, scipy and h5py are used (no torch). scipy's submodules (sparse, interpolate, special)
are imported inside the functions that use them: every run imports these modules with the problem
library, and importing those submodules at the top cost ~1 s of start-up (Intel Xeon).
"""

from kanpde.pde.references.base import Reference
from kanpde.pde.references.burgers import burgers, cole_hopf
from kanpde.pde.references.cache import cache_path, cached, load, save
from kanpde.pde.references.cavity import cavity
from kanpde.pde.references.poisson_fd import lshape, solve_dirichlet
from kanpde.pde.references.spectral import allen_cahn, kdv, solve_allen_cahn, solve_kdv

__all__ = ["Reference", "allen_cahn", "burgers", "cache_path", "cached", "cavity", "cole_hopf", "kdv", "load",
           "lshape", "save", "solve_allen_cahn", "solve_dirichlet", "solve_kdv"]
