"""Reading a trained KAN: sparsity, pruning, symbolic snapping, formulas and their tidying, and
pictures of the edges (arXiv 2404.19756, sec. 2.5)."""
