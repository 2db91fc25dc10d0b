"""The problem library: domains and sampling, named derivative fields, conditions (boundary,
initial, periodic, data), hard constraints, physics-informed problems and reference solvers."""
