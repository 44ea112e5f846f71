"""Optuna studies of one-run jobs: the loop, search space, storage + lock + heartbeats, recovery
of lost trials, the MLflow parent run, helper workers on this machine, the console summary."""
