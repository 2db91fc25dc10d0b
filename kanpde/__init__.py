"""kanpde: physics-informed Kolmogorov-Arnold Networks, a PDE and physics solver toolkit.

`kanpde.solve(...)` solves a problem from Python (see `kanpde.api`); `python -m kanpde` does the
same from the command line.
"""


def __getattr__(name: str):
    if name == "solve":  # lazy: `import kanpde` stays light; the solver pulls in torch and Hydra
        from kanpde.api import solve

        return solve
    raise AttributeError(f"module 'kanpde' has no attribute {name!r}")
