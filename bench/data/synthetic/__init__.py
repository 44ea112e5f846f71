"""Data of known density: the loss's true lower bound, -E ln p_data(x), is exact per example."""
