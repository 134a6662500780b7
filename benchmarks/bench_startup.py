"""Benchmark: what a new process pays before its first result.

Each contender is a fresh Python process, timed from start to exit; the contenders run in turn,
round after round, and each figure is the median over the rounds:

* ``python -c "import adamnb"`` -- the import alone;
* ``adamnb minimize rosenbrock --method adam --lr 0.01 --maxiter 5000`` -- the command-line
  example, in a warm process: numba's disk cache already holds what an earlier run compiled
  (one untimed run first fills it), so what it adds to the import is numba's start-up and the
  run;
* the compile of a user's own jitted objective's loop (which numba cannot cache on disk): a
  process that makes one host-loop run (numba started, the objective compiled) and then one
  ``compiled=True`` run, reporting the second run's seconds.

The acceptance asks for the command-line example within 0.5 s of the import. Run:
``python benchmarks/bench_startup.py [--repeats 9] [--json FILE]``
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from adamnb.experiments import machine, write_json

CLI = ["-m", "adamnb", "minimize", "rosenbrock", "--method", "adam", "--lr", "0.01",
       "--maxiter", "5000"]
USER_COMPILE = """
import time, numpy as np, numba, adamnb
@numba.njit
def users_rosenbrock(x):
    a = x[1] - x[0] * x[0]
    b = 1.0 - x[0]
    return 100.0 * a * a + b * b, np.array([-400.0 * x[0] * a - 2.0 * b, 200.0 * a])
adamnb.minimize(users_rosenbrock, [-1.2, 1.0], jac=True, options={"maxiter": 1, "compiled": False})
start = time.perf_counter()
adamnb.minimize(users_rosenbrock, [-1.2, 1.0], jac=True, options={"maxiter": 1, "compiled": True})
print(time.perf_counter() - start)
"""


def timed(arguments):
    start = time.perf_counter()
    completed = subprocess.run([sys.executable, *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{arguments} failed:\n{completed.stderr}")
    return seconds, completed.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    timed(CLI)  # fills numba's disk cache: the timed runs are "a second, warm process"
    samples = {"import adamnb": [], "adamnb minimize rosenbrock ... --maxiter 5000": [],
               "compiling a user's objective's loop (in-process)": []}
    for _ in range(args.repeats):
        samples["import adamnb"].append(timed(["-c", "import adamnb"])[0])
        samples["adamnb minimize rosenbrock ... --maxiter 5000"].append(timed(CLI)[0])
        output = timed(["-c", USER_COMPILE])[1]
        samples["compiling a user's objective's loop (in-process)"].append(float(output.split()[-1]))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"# median of {args.repeats} rounds, each contender a fresh process; "
          f"machine: {machine()}; load average before: {os.getloadavg()[0]:.1f}")
    print("| contender | seconds (median) | all rounds |")
    print("|---|---|---|")
    for name, values in samples.items():
        print(f"| {name} | {medians[name]:.3f} | {', '.join(f'{v:.2f}' for v in values)} |")
    extra = medians["adamnb minimize rosenbrock ... --maxiter 5000"] - medians["import adamnb"]
    print(f"# the command-line example adds {extra:.3f} s to the import (acceptance: at most 0.5)")
    if args.json:
        write_json(args.json, {"machine": machine(), "samples": samples, "medians": medians,
                               "cli_minus_import": extra})


if __name__ == "__main__":
    main()
