"""The cost of running a cell through each executor of adamnb.sweep, against calling it here.

A cell that does nothing (``{"x": i} -> {"x": i}``) measures what the executor itself costs per
cell: shipping the function and the cell, the record's way back, the bookkeeping. Each executor
runs the same N cells in interleaved rounds; the tables give medians. The pools are started
before the clock (their start-up is listed apart): the per-cell figure is what a long sweep pays.

    python benchmarks/bench_sweep.py [--cells 400] [--repeats 5]

Needs dask[distributed] for the Dask rows (a LocalCluster of 2 worker processes, 1 thread each).
"""

import argparse
import statistics
import time

from adamnb import sweep as sweeps
from adamnb.experiments import machine


def nothing(cell):
    """A cell that costs nothing: what is left is the executor's own cost."""
    return {"x": cell["x"]}


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cells = [{"x": i} for i in range(args.cells)]

    started = time.perf_counter()
    pool = sweeps.Processes(2)
    sweeps.sweep(nothing, cells[:2], workers=pool, progress=False)  # start the processes
    pool_start = time.perf_counter() - started
    executors = {"this process (workers=1)": 1, "2 local processes (Processes(2))": pool}
    cluster = client = None
    try:
        import distributed
        started = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        sweeps.sweep(nothing, cells[:2], scheduler=client, progress=False)
        dask_start = time.perf_counter() - started
        executors["Dask LocalCluster, 2 worker processes"] = ("dask", client)
    except ImportError:
        dask_start = None

    times = {name: [] for name in executors}
    for _ in range(args.repeats):
        for name, executor in executors.items():
            if isinstance(executor, tuple):
                run = lambda: sweeps.sweep(nothing, cells, scheduler=executor[1],  # noqa: E731
                                           progress=False)
            else:
                run = lambda: sweeps.sweep(nothing, cells, workers=executor,  # noqa: E731
                                           progress=False)
            times[name].append(timed(run))
    pool.close()
    if client is not None:
        client.close()
        cluster.close()

    print(f"Machine: {machine()}")
    print(f"{args.cells} cells that do nothing, median of {args.repeats} interleaved rounds\n")
    print("| executor | seconds per sweep | ms per cell (wall) |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {1e3 * median / args.cells:.2f} |")
    print(f"\nStart-up, once: 2 local processes {pool_start:.1f} s"
          + (f"; Dask LocalCluster with 2 workers {dask_start:.1f} s" if dask_start else ""))


if __name__ == "__main__":
    main()
