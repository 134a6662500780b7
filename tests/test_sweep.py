"""adamnb.sweep: every executor gives the serial sweep's bits; resume; faults; Dask on a real
LocalCluster (processes, 2 workers).

The cell functions live in tests/sweep_cells.py: worker processes import them by name.
"""

import json
import math
import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from adamnb import sweep as sweeps
from adamnb.sweep import Store, grid, sweep
from tests import sweep_cells

ROOT = Path(__file__).resolve().parents[1]


def assert_identical(a, b, where="record"):
    """Equal bit for bit: same types, same array dtypes and bytes, same float bits."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{index}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, where


def optimization_cells(**extra):
    # Few (method, function) pairs: each worker process compiles each pair's loop once.
    cells = grid(function=["rosenbrock", "booth", "beale"], method=["adam"], lr=[0.01, 0.1])
    return [{**cell, "steps": 300, **extra} for cell in cells]


@pytest.fixture(scope="module")
def serial():
    """The reference: every cell in this process, in order."""
    return sweep(sweep_cells.optimize, optimization_cells(), workers=1, progress=False)


# --- cells, keys, records -------------------------------------------------------------------------

def test_grid_is_the_product_with_the_last_axis_fastest():
    assert grid(a=[1, 2], b=["x", "y", "z"]) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
        {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]
    with pytest.raises(TypeError, match="axis 'a'"):
        grid(a="adam")


def test_cell_keys_depend_on_content_not_order_and_reject_objects():
    assert sweeps.cell_key({"a": 1, "b": 2.5}) == sweeps.cell_key({"b": 2.5, "a": 1})
    assert sweeps.cell_key({"a": 1}) != sweeps.cell_key({"a": 2})
    assert sweeps.cell_key({"a": 1}) != sweeps.cell_key({"a": 1.0000000000000002})
    with pytest.raises(TypeError, match="object"):
        sweeps.cell_key({"f": object()})
    with pytest.raises(TypeError, match="dict"):
        sweep(sweep_cells.square, [1, 2], workers=1)


def test_records_survive_the_store_exactly(tmp_path):
    record = {"f": 0.1 + 0.2, "tiny": 5e-324, "nan": math.nan, "inf": -math.inf, "none": None,
              "n": 2 ** 62, "s": "text", "flag": True, "list": [1, 2.5, "a"],
              "a32": np.linspace(0, 1, 7, dtype=np.float32), "a64": np.array([[1e-300, -0.0]]),
              "ints": np.arange(4, dtype=np.int16), "raw": b"\x89PNG\x00",
              "nested": {"x": np.float64(1 / 3), "y": np.int64(7)}}
    store = Store(tmp_path / "store")
    store.save({"cell": 1}, record)
    back = store.load({"cell": 1})
    expected = dict(record, list=[1, 2.5, "a"], nested={"x": 1 / 3, "y": 7})
    for key in record:
        if key == "nan":
            assert math.isnan(back[key])
        else:
            assert_identical(back[key], expected[key], key)
    assert store.load({"cell": 2}) is None
    with pytest.raises(TypeError, match="set"):
        store.save({"cell": 3}, {"bad": {1, 2}})


# --- executors: the serial sweep's bits everywhere ------------------------------------------------

def test_local_processes_give_the_serial_bits_in_any_order(serial):
    cells = optimization_cells()
    assert serial.ok and len(serial) == len(cells)
    reverse = sweep(sweep_cells.optimize, cells[::-1], workers=2, progress=False)
    assert reverse.ok
    for index, row in enumerate(reverse[::-1]):
        assert_identical(row, serial[index], f"cell {index}")


def test_a_map_like_callable_gives_the_serial_bits(serial):
    with ThreadPoolExecutor(3) as pool:
        threaded = sweep(sweep_cells.optimize, optimization_cells(), workers=pool.map,
                         progress=False)
    for index, row in enumerate(threaded):
        assert_identical(row, serial[index], f"cell {index}")


def test_results_as_a_table(serial):
    pandas = pytest.importorskip("pandas")
    frame = serial.to_frame()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns[:4]) == ["function", "method", "lr", "steps"]
    assert len(frame) == len(serial)
    assert (frame["status"] == "done").all()
    best = frame.loc[frame.groupby("function")["fun"].idxmin()]
    assert set(best["function"]) == {"rosenbrock", "booth", "beale"}


def test_executor_options_are_checked():
    with pytest.raises(ValueError, match="workers"):
        sweeps.Processes(0)
    with pytest.raises(TypeError, match="workers"):
        sweeps.executor(workers="four")
    with pytest.raises(TypeError, match="scheduler"):
        sweep(sweep_cells.square, [], scheduler=8786)


def test_a_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ImportError, match=r'pip install "adamnb\[distributed\]"'):
        sweep(sweep_cells.square, [{"x": 1}], scheduler="tcp://127.0.0.1:8786")


# --- faults ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_a_raising_cell_is_recorded_as_failed_and_the_sweep_goes_on(workers):
    result = sweep(sweep_cells.failing, grid(x=range(5)), workers=workers, progress=False)
    assert [row["status"] for row in result] == ["done", "failed", "done", "failed", "done"]
    assert result[1]["error"] == "ArithmeticError: objective failed at x = 1"
    assert result[4]["y"] == 16 and result.records[1] is None
    assert not result.ok
    with pytest.raises(sweeps.SweepError, match="2 of 5 cells failed.*x=1: ArithmeticError"):
        result.check()


def test_a_killed_local_worker_is_replaced_and_its_cell_retried_once(tmp_path):
    cells = [{"x": 0}, {"x": 1, "once": str(tmp_path / "died-once")}, {"x": 2},
             {"x": 3, "always": True}, {"x": 4}]
    result = sweep(sweep_cells.dying, cells, workers=2, progress=False)
    assert (tmp_path / "died-once").exists()  # the first attempt did die
    assert [row["status"] for row in result] == ["done", "done", "done", "failed", "done"]
    assert "died 2 times" in result[3]["error"] and "exit code 18" in result[3]["error"]
    assert [row["x"] for row in result if row["status"] == "done"] == [0, 1, 2, 4]


def test_a_processes_pool_serves_several_sweeps_and_map_calls():
    with sweeps.Processes(2) as pool:
        first = sweep(sweep_cells.failing, grid(x=[0, 2]), workers=pool, progress=False)
        pids = {process.process.pid for process in pool._pool}
        assert pool(sweep_cells.square, [1, 2, 3]) == [1, 4, 9]
        assert {process.process.pid for process in pool._pool} == pids  # the same, warm
    assert first.ok and pool._pool == []


# --- the store: resume ----------------------------------------------------------------------------

def test_an_interrupted_sweep_resumes_computing_only_the_rest(tmp_path, serial):
    calls = tmp_path / "calls"
    cells = optimization_cells(calls=str(calls))
    store = tmp_path / "store"
    # A first sweep stops after 3 of the 6 cells (as an interruption would leave it) ...
    sweep(sweep_cells.optimize, cells[:3], workers=1, store=store, progress=False)
    assert len(list(calls.iterdir())) == 3 and len(Store(store)) == 3
    # ... plus a record that something else half-wrote: it does not count as finished.
    broken = Store(store).path(cells[3])
    broken.write_text('{"cell": {"function": "beale"')
    resumed = sweep(sweep_cells.optimize, cells, workers=1, store=store, progress=False)
    assert resumed.resumed == 3
    assert len(list(calls.iterdir())) == 6  # only the other 3 ran
    assert not [p for p in store.iterdir() if not p.name.endswith(".json")]  # no temporary files
    for index, row in enumerate(resumed):
        row = {key: value for key, value in row.items() if key != "calls"}
        assert_identical(row, serial[index], f"cell {index}")
    again = sweep(sweep_cells.optimize, cells, workers=1, store=store, progress=False)
    assert again.resumed == 6 and len(list(calls.iterdir())) == 6


_INTERRUPTED = textwrap.dedent("""
    import sys
    from adamnb.sweep import grid, sweep
    from tests import sweep_cells
    cells = [{"x": x, "sleep": 0.3, "calls": sys.argv[2], "hold": sys.argv[3]} for x in range(12)]
    if __name__ == "__main__":
        sweep(sweep_cells.sleepy, cells, workers=2, store=sys.argv[1], progress="lines")
""")


def test_ctrl_c_keeps_finished_cells_and_leaves_no_partial_file(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(_INTERRUPTED)
    store, calls, release = tmp_path / "store", tmp_path / "calls", tmp_path / "release"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    # cells 3 to 11 wait for `release`: the sweep is still running when Ctrl-C comes
    process = subprocess.Popen([sys.executable, str(script), str(store), str(calls),
                                str(release)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=environment,
                               # Ctrl-C's default, as at a terminal: a process that runs this
                               # test may ignore SIGINT (and a child inherits that)
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while len(Store(store)) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole process group
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "interrupted" in err and "run the same sweep again to resume" in err
    finished = list(store.iterdir())
    assert 3 <= len(finished) < 12
    for path in finished:  # every stored record is whole
        assert path.suffix == ".json" and not path.name.startswith(".")
        json.loads(path.read_text())
    done_before = len(list(calls.iterdir()))
    release.touch()
    completed = subprocess.run([sys.executable, str(script), str(store), str(calls),
                                str(release)], cwd=ROOT,
                               capture_output=True, text=True, timeout=180, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert f"{len(finished)} of 12 cells already done in the store" in completed.stderr
    assert len(list(calls.iterdir())) == done_before + 12 - len(finished)


# --- Dask: a real LocalCluster, processes, 2 workers ----------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local, \
            distributed.Client(local) as client:
        yield local, client


def test_dask_sweep_equals_the_serial_sweep_bit_for_bit(cluster, serial):
    local, client = cluster
    for scheduler in (client, local.scheduler_address):  # a client, or an address
        on_cluster = sweep(sweep_cells.optimize, optimization_cells()[::-1], scheduler=scheduler,
                           progress=False)
        for index, row in enumerate(on_cluster[::-1]):
            assert_identical(row, serial[index], f"cell {index}")
    assert client.status == "running"  # a client passed in stays open


def test_dask_records_a_raising_cell_as_failed(cluster):
    _, client = cluster
    result = sweep(sweep_cells.failing, grid(x=range(4)), scheduler=client, progress=False)
    assert [row["status"] for row in result] == ["done", "failed", "done", "failed"]
    assert result[3]["error"] == "ArithmeticError: objective failed at x = 3"


def test_dask_sweep_resumes_from_the_store(cluster, tmp_path, serial):
    _, client = cluster
    calls, store = tmp_path / "calls", tmp_path / "store"
    cells = optimization_cells(calls=str(calls))
    sweep(sweep_cells.optimize, cells[1:4], scheduler=client, store=store, progress=False)
    resumed = sweep(sweep_cells.optimize, cells, scheduler=client, store=store, progress=False)
    assert resumed.resumed == 3 and len(list(calls.iterdir())) == 6
    for index, row in enumerate(resumed):
        row = {key: value for key, value in row.items() if key != "calls"}
        assert_identical(row, serial[index], f"cell {index}")


def test_killing_a_dask_worker_mid_sweep_still_completes_every_cell(cluster, serial):
    _, client = cluster
    cells = optimization_cells(sleep=0.6)  # 6 cells of about 0.6 s each, on 2 workers
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))

    def kill_one():
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    result = sweep(sweep_cells.optimize, cells, scheduler=client, progress=False)
    killer.join()
    assert victim not in client.run(os.getpid).values()  # the worker did die
    assert result.ok, result.failed
    for index, row in enumerate(result):
        row = {key: value for key, value in row.items() if key != "sleep"}
        assert_identical(row, serial[index], f"cell {index}")
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it, for the next tests
