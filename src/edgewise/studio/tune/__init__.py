"""Hyperparameter search on Optuna: search spaces, samplers (grid, random, tpe, tt), objectives,
resumable/distributed studies, results and export of the chosen trial. See docs/tune.md."""
