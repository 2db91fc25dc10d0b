"""Reference solutions computed by classical solvers, cached in HDF5 keyed by their settings."""
