"""Benchmark the four samplers (grid, random, tpe, tt) at equal budget.

(a) discrete test functions (Ackley, Rastrigin, Rosenbrock, Schwefel, Alpine on grids of
    `--levels` points in `--dims` dimensions), best value found after N trials, median and mean
    over `--seeds` seeds, printed at several budgets;
(b) `--train`: a real small training task (digits sample, a few trials per sampler).

    .venv/bin/python benchmarks/tune.py --trials 150 --seeds 5
    .venv/bin/python benchmarks/tune.py --train --trials 8 --seeds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import optuna

from edgewise.studio.tune.samplers import SAMPLERS, create_sampler
from edgewise.studio.tune.testfunctions import FUNCTIONS, evaluate, grid_space

SAMPLER_NAMES = ["grid", "random", "tpe", "tt"]


def run_function(function: str, sampler_name: str, dims: int, levels: int, trials: int, seed: int) -> list[float]:
    """Best-so-far value after each trial of one run."""
    space = grid_space(dims, levels)
    sampler = create_sampler(sampler_name, space, seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial.suggest_int(name, dist.low, dist.high) for name, dist in space.items()}  # type: ignore[attr-defined]
        return evaluate(function, params, levels)

    study.optimize(objective, n_trials=trials)
    values = [t.value for t in study.trials if t.value is not None]
    return list(np.minimum.accumulate(values))


def function_benchmark(args: argparse.Namespace) -> int:
    checkpoints = sorted({max(1, args.trials // 4), args.trials // 2, args.trials})
    print(f"# discrete test functions: {args.dims} dims x {args.levels} levels, {args.trials} trials, "
          f"{args.seeds} seeds; best value found (lower is better), median [mean]")
    header = "| function | sampler | " + " | ".join(f"n={n}" for n in checkpoints) + " | time/run |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    verdicts = []
    for function in args.functions:
        finals: dict[str, float] = {}
        for sampler_name in args.samplers:
            started = time.perf_counter()
            curves = [run_function(function, sampler_name, args.dims, args.levels, args.trials, seed)
                      for seed in range(args.seeds)]
            per_run = (time.perf_counter() - started) / args.seeds
            cells = []
            for n in checkpoints:
                at_n = [curve[min(n, len(curve)) - 1] for curve in curves]
                cells.append(f"{statistics.median(at_n):.3g} [{statistics.mean(at_n):.3g}]")
            finals[sampler_name] = statistics.median(curve[-1] for curve in curves)
            print(f"| {function} | {sampler_name} | " + " | ".join(cells) + f" | {per_run:.1f}s |", flush=True)
        if {"tt", "tpe", "random"} <= finals.keys():
            ok = finals["tt"] <= finals["tpe"] and finals["tt"] < finals["random"] and finals["tpe"] < finals["random"]
            verdicts.append((function, ok, finals))
    print()
    for function, ok, finals in verdicts:
        rendered = ", ".join(f"{k}={v:.3g}" for k, v in finals.items())
        print(f"{function}: {'PASS' if ok else 'FAIL'} (tt <= tpe, both < random; median final: {rendered})")
    return 0 if all(ok for _, ok, _ in verdicts) else 1


TRAIN_SPACE = {
    "params": {
        "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adamw", "sgd"]},
        "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
        "width": {"type": "float", "low": 0.5, "high": 1.5, "step": 0.5},
        "label_smoothing": {"type": "categorical", "choices": [0.0, 0.1]},
    },
    "fixed": {"arch": "cnn-small", "epochs": 4, "image_size": 16, "augment": False, "num_threads": 2},
}


def train_benchmark(args: argparse.Namespace) -> int:
    """(b): best validation accuracy vs trials on a small digits sample, per sampler."""
    import tempfile
    from pathlib import Path

    from edgewise.studio.samples import write_sample
    from edgewise.studio.tune.objective import TrainingObjective
    from edgewise.studio.tune.space import parse_space

    space = parse_space(TRAIN_SPACE, "benchmark space")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_sample("digits", Path(tmp) / "digits", size=args.train_size, seed=0, image_size=16)
        print(f"# training task: digits sample ({args.train_size} images, 16 px), cnn-small, 4 epochs/trial, "
              f"{args.trials} trials, {args.seeds} seeds; best val accuracy (higher is better), median [mean]")
        print("| sampler | " + " | ".join(f"n={n}" for n in range(1, args.trials + 1)) + " | time/run |")
        print("|" + "---|" * (args.trials + 2))
        for sampler_name in args.samplers:
            curves, started = [], time.perf_counter()
            for seed in range(args.seeds):
                objective = TrainingObjective(space, data, Path(tmp) / f"{sampler_name}-{seed}", objectives=["acc"])
                sampler = create_sampler(sampler_name, space.distributions(), seed=seed)
                study = optuna.create_study(direction="maximize", sampler=sampler,
                                            pruner=optuna.pruners.NopPruner())
                study.optimize(objective, n_trials=args.trials)
                curves.append(list(np.maximum.accumulate([t.value for t in study.trials])))
            per_run = (time.perf_counter() - started) / args.seeds
            cells = [f"{statistics.median(c[n] for c in curves):.3f} [{statistics.mean(c[n] for c in curves):.3f}]"
                     for n in range(args.trials)]
            print(f"| {sampler_name} | " + " | ".join(cells) + f" | {per_run:.0f}s |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dims", type=int, default=5)
    parser.add_argument("--levels", type=int, default=12)
    parser.add_argument("--functions", nargs="+", default=sorted(FUNCTIONS), choices=sorted(FUNCTIONS))
    parser.add_argument("--samplers", nargs="+", default=SAMPLER_NAMES, choices=SAMPLERS.names())
    parser.add_argument("--train", action="store_true", help="run (b), the small training task, instead")
    parser.add_argument("--train-size", type=int, default=400, help="images in the digits sample for --train")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.train:
        return train_benchmark(args)
    return function_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
