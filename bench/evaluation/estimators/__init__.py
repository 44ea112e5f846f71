"""Estimators of the bound ladder: the importance-weighted bound, each example's best posterior
of the variant's family (q*), AIS and quadrature below them, means with standard errors."""
