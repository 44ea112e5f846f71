"""Benchmarks: the training loop and evaluator against a reference loop, trials per hour."""
