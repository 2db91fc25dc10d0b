"""The networks x -> u and their derivatives: B-spline KAN, Chebyshev KAN and MLP layers, periodic
input features, the jets that push (u, grad u, second derivatives) forward through them, the
fused CPU kernel, grid operations."""
