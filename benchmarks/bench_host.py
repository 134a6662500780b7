"""Benchmark: the host loop's step (``minimize`` with Python callables), against an earlier commit.

20,000 Adam steps (lr 1e-3) on 2-D Rosenbrock with ``compiled=False``, for three objectives: the
test function's jitted ``fun`` and ``jac``, a Python ``value_and_grad`` (``jac=True``), and a
trivial Python ``fun`` and ``jac`` (what the driver itself costs per step). With ``--before
COMMIT`` the same runs are made, in this process and interleaved round by round, with the code of
that commit: ``git archive`` extracts its ``adamnb`` package into a temporary folder, renamed
``adamnb_before`` (every ``adamnb`` name in its sources rewritten), and the script first checks
that both versions give the same bits. Each figure is the median over the rounds of the wall time
and of the process's CPU time per step. Run from the repository root:
``python benchmarks/bench_host.py [--before COMMIT] [--steps 20000] [--repeats 9] [--json FILE]``
"""

import argparse
import importlib
import io
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

import adamnb
from adamnb.experiments import machine, write_json
from adamnb.problems.functions import get


def import_before(commit, folder):
    """The ``adamnb`` package of ``commit``, imported as ``adamnb_before`` from ``folder``."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "adamnb"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = Path(folder) / "adamnb_before"
    (Path(folder) / "adamnb").rename(package)
    for source in package.rglob("*.py"):
        source.write_text(re.sub(r"\badamnb\b", "adamnb_before", source.read_text()))
    sys.path.insert(0, str(folder))
    return importlib.import_module("adamnb_before")


def contenders(library, steps):
    rosenbrock = get("rosenbrock")
    zero = np.zeros(2)
    options = {"lr": 1e-3, "maxiter": steps, "gtol": 0, "compiled": False}
    x0 = rosenbrock.x0
    return {
        "the test function's jitted fun and jac": lambda: library.minimize(
            rosenbrock.fun, x0, jac=rosenbrock.grad, options=options),
        "a Python value_and_grad (jac=True)": lambda: library.minimize(
            lambda x: rosenbrock.value_and_grad(x), x0, jac=True, options=options),
        "trivial Python fun and jac (the driver's own cost)": lambda: library.minimize(
            lambda x: 0.0, x0, jac=lambda x: zero, options=options),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="COMMIT", help="also time this commit's code")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        versions = {"after": contenders(adamnb, args.steps)}
        if args.before:
            versions = {"before": contenders(import_before(args.before, folder), args.steps),
                        **versions}
        names = list(versions["after"])
        for name in names:
            results = [run() for run in (version[name] for version in versions.values())]
            assert all(r.x.tobytes() == results[0].x.tobytes() and r.nfev == results[0].nfev
                       for r in results), f"{name}: the versions differ"
        wall = {(version, name): [] for version in versions for name in names}
        cpu = {key: [] for key in wall}
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for name in names:
                for version, runs in versions.items():
                    started, cpu_started = time.perf_counter(), time.process_time()
                    runs[name]()
                    wall[version, name].append(time.perf_counter() - started)
                    cpu[version, name].append(time.process_time() - cpu_started)
    per_step = {key: (statistics.median(wall[key]) / args.steps * 1e6,
                      statistics.median(cpu[key]) / args.steps * 1e6) for key in wall}
    print(f"# {args.steps} Adam steps per run on 2-D Rosenbrock, host loop, median of "
          f"{args.repeats} interleaved rounds; load average {load:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    print(f"# machine: {machine()}")
    columns = [f"{version}: wall (CPU) us per step" for version in versions]
    print("| objective | " + " | ".join(columns) + (" | after / before |" if args.before else " |"))
    print("|---|" + "---|" * (len(columns) + bool(args.before)))
    for name in names:
        cells = [f"{per_step[v, name][0]:.2f} ({per_step[v, name][1]:.2f})" for v in versions]
        ratio = [f"{per_step['after', name][0] / per_step['before', name][0]:.2f}"] \
            if args.before else []
        print(f"| {name} | " + " | ".join(cells + ratio) + " |")
    if args.json:
        write_json(args.json, {"machine": machine(), "before": args.before, "steps": args.steps,
                               "per_step_us": {f"{v}: {n}": value
                                               for (v, n), value in per_step.items()}})


if __name__ == "__main__":
    main()
