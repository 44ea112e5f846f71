"""Estimators of the bound ladder: the importance-weighted bound, each example's best Gaussian
posterior, means with standard errors."""
