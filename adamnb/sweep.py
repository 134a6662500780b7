"""Sweeps: many independent runs (cells) on local processes or a Dask cluster, resumable.

What users of an optimizer toolkit run most is not one optimization but many: a step-size grid
per method, comparisons over seeds, many starts of a multimodal function. A sweep is

* a list of **cells**, plain JSON-like dicts (``{"method": "adam", "lr": 0.01, "seed": 0}``),
  often the product of a few axes (:func:`grid`);
* a **function** ``fn(cell) -> dict`` that runs one cell and returns a small record (numbers,
  strings, lists, NumPy arrays);
* an **executor**: this process (``workers=1``), local worker processes (the default: one per
  core), any map-like callable (``workers=pool.map``, scipy's convention), or a Dask distributed
  cluster (``scheduler="tcp://host:8786"`` or a ``dask.distributed.Client``).

>>> from adamnb.sweep import grid, sweep
>>> cells = grid(method=["adam", "sgd"], lr=[0.1, 0.01])
>>> table = sweep(my_run, cells, store="sweep-store")          # doctest: +SKIP
>>> table.to_frame()                                            # doctest: +SKIP

Each cell runs on its own, so cells run in any order, on any executor, give the bits they give
alone (the function must not depend on anything but its cell; seed from the cell). Results come
back in the order of the cells as a :class:`SweepResult`, one row per cell (the cell's fields,
the record's, ``status`` and ``error``), convertible to a pandas DataFrame.

Store and resume
    With ``store=FOLDER``, every finished cell is written to one small JSON file named by a hash
    of the cell, atomically (:func:`adamnb._io.atomic_write`), as soon as it finishes. Run the
    same sweep again after an interruption (Ctrl-C, a lost machine) and the cells found there are
    read back, not recomputed; only the rest run. Records read back are bit-identical to freshly
    computed ones (floats and arrays are stored exactly; every record, stored or not, passes
    through the same encoding, so both come back with the same types). A failed cell is not
    stored: a later run tries it again. The store knows nothing of the code: after changing the
    function, delete the folder.

Faults
    A cell whose function raises is recorded as failed, with the error's text, and the sweep goes
    on. On the local executor a worker process that dies (killed, out of memory, a crash in
    compiled code) is replaced and its cell retried once (``retries=1``); a cell that kills its
    worker twice is recorded as failed. Dask reschedules the cells of a lost worker itself (up to
    its ``distributed.scheduler.allowed-failures``). With a map-like ``workers`` callable, faults
    are that callable's to handle.

Your own function on workers
    Worker processes (local or Dask) import ``fn`` by name: define it at the top level of an
    importable module (a file of your project on the workers' ``sys.path``, or an installed
    package), not in a notebook or inside another function, and have adamnb installed on every
    worker. numba-jitted objectives travel the same way, by reference to their module, and each
    worker process compiles them once (numba's ``cache=True`` lets them reuse the compiled code
    from disk). For local processes, a script calling :func:`sweep` must guard its top level with
    ``if __name__ == "__main__":`` (workers start with ``spawn``, which imports the script).

A Dask cluster with Dask's own tools
    ``pip install "adamnb[distributed]"`` on every machine, then::

        dask scheduler                                  # prints tcp://HOST:8786
        dask worker tcp://HOST:8786 --nworkers 4 --nthreads 1   # on each machine

    and pass ``scheduler="tcp://HOST:8786"`` (``adamnb experiment NAME --scheduler ...``). On an
    HPC batch system, dask-jobqueue starts the workers as batch jobs::

        from dask_jobqueue import SLURMCluster
        cluster = SLURMCluster(cores=8, processes=8, memory="16GB", walltime="02:00:00")
        cluster.scale(jobs=4)
        sweep(fn, cells, scheduler=Client(cluster))

    One thread per worker process (``--nthreads 1``, more processes) suits numba and NumPy code,
    which holds the GIL between compiled calls; Dask's nanny sets the BLAS and OpenMP threads of
    each worker to 1.

Threads in local workers
    Each local worker process gets ``cores // workers`` threads for numba, OpenMP and BLAS (the
    variables ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
    ``MKL_NUM_THREADS``, unless already set), so that the processes do not oversubscribe the
    cores.
"""

import base64
import contextlib
import hashlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from pathlib import Path

import numpy as np

from adamnb._io import atomic_write

__all__ = ["grid", "sweep", "SweepResult", "Store", "Processes", "executor", "cell_key",
           "available_cores", "in_worker", "chunks", "SweepInterrupted", "SweepError",
           "require_distributed", "describe_cell", "run_minimize"]

#: The environment variables that size a worker's thread pools (numba, OpenMP, BLAS).
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")

_IN_WORKER = False
#: How long a worker stopped mid-cell may take to unwind before it is killed.
_GRACE_SECONDS = 3.0


def in_worker():
    """Whether this code runs in a sweep's worker process (local or Dask).

    Returns
    -------
    bool
        True inside a worker: progress bars belong to the main process there.
    """
    if _IN_WORKER:
        return True
    if "distributed" not in sys.modules:  # not a Dask worker; and importing Dask takes time
        return False
    from distributed import get_worker
    try:
        get_worker()
        return True
    except ValueError:
        return False


def available_cores():
    """The cores this process may run on (its CPU affinity where the system tells it).

    Returns
    -------
    int
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- cells and records ----------------------------------------------------------------------------

def grid(**axes):
    """Every combination of the axes' values, as a list of cells; the last axis varies fastest.

    Parameters
    ----------
    **axes : sequences
        One keyword per axis, e.g. ``method=["adam", "sgd"], lr=[0.1, 0.01]``.

    Returns
    -------
    list of dict
        ``[{"method": "adam", "lr": 0.1}, {"method": "adam", "lr": 0.01}, ...]``.

    Examples
    --------
    >>> grid(method=["adam", "sgd"], seed=[0, 1])
    [{'method': 'adam', 'seed': 0}, {'method': 'adam', 'seed': 1}, {'method': 'sgd', 'seed': 0}, {'method': 'sgd', 'seed': 1}]
    """
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"grid axis {name!r} must be a sequence of values, got {values!r}")
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def _encode(value):
    """``value`` as JSON-ready data that :func:`_decode` turns back into it, bit for bit.

    Arrays keep dtype, shape and bytes; bytes stay bytes; tuples become lists; NumPy scalars
    become Python numbers (exactly: float64 -> float, integers -> int).
    """
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"record keys must be strings, got {key!r}")
            encoded[key] = _encode(item)
        return encoded
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("arrays of Python objects cannot be stored in a record")
        data = np.ascontiguousarray(value)
        return {"__ndarray__": base64.b64encode(data.tobytes()).decode("ascii"),
                "dtype": data.dtype.str, "shape": list(data.shape)}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return _encode(value.item())
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"a record may hold numbers, strings, None, lists, dicts, bytes and NumPy "
                    f"arrays; got {type(value).__name__}: {value!r:.80}")


def _decode(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            data = base64.b64decode(value["__ndarray__"])
            return np.frombuffer(data, dtype=np.dtype(value["dtype"])).reshape(
                value["shape"]).copy()
        if "__bytes__" in value:
            return base64.b64decode(value["__bytes__"])
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _dumps(value):
    # JSON proper has no NaN or infinity, but a record may hold them (a diverged run): Python's
    # json writes and reads them back as NaN/Infinity, which is all a private store needs.
    return json.dumps(_encode(value), sort_keys=True, allow_nan=True)


def cell_key(cell):
    """A short name for a cell, the same in every process: a hash of its canonical JSON.

    Parameters
    ----------
    cell : dict
        Plain data (see :func:`sweep`).

    Returns
    -------
    str
        16 hex digits (the first 64 bits of the SHA-256 of the cell's sorted-key JSON).
    """
    if not isinstance(cell, dict):
        raise TypeError(f"a cell must be a dict, got {type(cell).__name__}: {cell!r:.80}")
    return hashlib.sha256(_dumps(cell).encode("utf-8")).hexdigest()[:16]


# --- the store ------------------------------------------------------------------------------------

class Store:
    """A folder of finished cells, one JSON file each, written atomically.

    Parameters
    ----------
    folder : str or Path
        Created when the first record is written.

    Notes
    -----
    File ``<cell_key(cell)>.json`` holds ``{"cell": cell, "record": record}``. A file is either
    absent or complete (it is renamed into place after being written in full), so an
    interrupted sweep never leaves a half-written record; an unreadable file (written by
    something else) counts as absent and is recomputed.
    """

    def __init__(self, folder):
        self.folder = Path(folder)

    def __repr__(self):
        return f"Store({str(self.folder)!r})"

    def path(self, cell):
        """The file of ``cell``."""
        return self.folder / f"{cell_key(cell)}.json"

    def load(self, cell):
        """The stored record of ``cell``.

        Parameters
        ----------
        cell : dict

        Returns
        -------
        dict or None
            None when the cell has no complete record here.
        """
        try:
            text = self.path(cell).read_text(encoding="utf-8")
            stored = json.loads(text)
        except (FileNotFoundError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("cell") != _encode(cell):
            return None
        return _decode(stored["record"])

    def save(self, cell, record):
        """Write ``record`` as the result of ``cell``, atomically.

        Parameters
        ----------
        cell, record : dict
            Plain data (see :func:`sweep`).

        Raises
        ------
        TypeError
            A value that a record cannot hold.
        """
        # The record's keys keep their order (a resumed table looks like a fresh one).
        with atomic_write(self.path(cell), "w", encoding="utf-8") as stream:
            stream.write(json.dumps({"cell": _encode(cell), "record": _encode(record)},
                                    allow_nan=True))

    def __len__(self):
        return len(list(self.folder.glob("*.json"))) if self.folder.is_dir() else 0

    def clear(self):
        """Delete the folder and everything in it."""
        shutil.rmtree(self.folder, ignore_errors=True)


# --- running one cell -----------------------------------------------------------------------------

def _run_cell(fn, cell):
    """``("done", record, seconds)`` or ``("failed", error text, seconds)``: never raises.

    The record is returned encoded (plain JSON-ready data), so that every executor hands back
    the same thing and a record that cannot be stored fails here, in its cell.
    """
    started = time.perf_counter()
    try:
        record = fn(cell)
        if not isinstance(record, dict):
            raise TypeError(f"the sweep function must return a dict, got "
                            f"{type(record).__name__}")
        return "done", _encode(record), time.perf_counter() - started
    except Exception as error:  # noqa: BLE001 -- a failing cell must not stop the sweep
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return "failed", text, time.perf_counter() - started


def _run_encoded(task):
    """``_run_cell`` on ``(fn, cell)``: the one-argument form that map-like callables take."""
    return _run_cell(*task)


# --- executors ------------------------------------------------------------------------------------

class _InProcess:
    """Run every cell here, one after the other (``workers=1``)."""

    def __init__(self):
        self.workers = 1

    def describe(self):
        return "this process"

    def run(self, fn, tasks, retries=1):
        for index, cell in tasks:
            yield index, _run_cell(fn, cell)

    def close(self):
        pass


class _MapLike:
    """A user's map-like callable (``Pool.map``, ``executor.map``): ``mapper(func, iterable)``."""

    def __init__(self, mapper):
        self.mapper = mapper
        self.workers = None

    def describe(self):
        return f"the map-like callable {getattr(self.mapper, '__qualname__', self.mapper)!r}"

    def run(self, fn, tasks, retries=1):
        tasks = list(tasks)
        outcomes = self.mapper(_run_encoded, [(fn, cell) for _, cell in tasks])
        for (index, _), outcome in zip(tasks, outcomes):
            yield index, tuple(outcome)

    def close(self):
        pass


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


def _worker_main(connection):
    """A local worker process: run the cells sent on ``connection`` until told to stop."""
    global _IN_WORKER
    _IN_WORKER = True
    # Ctrl-C reaches the whole process group; the parent decides what stops, and ends workers
    # with SIGTERM, which unwinds the cell (context managers clean up their temporary files).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_term)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        index, fn, cell = task
        connection.send((index, _run_cell(fn, cell)))


class _Worker:
    def __init__(self, context, environment):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True,
                                       name="adamnb-sweep-worker")
        with _environment(environment):
            self.process.start()
        child.close()
        self.index = self.cell = None  # the cell it is running

    def ask_to_stop(self):
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(None)

    def stop(self, asked=False):
        """Stop the process (asked first, unless it was; killed if not gone within 2 s)."""
        if not asked:
            self.ask_to_stop()
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


_environment_lock = threading.Lock()


@contextlib.contextmanager
def _environment(variables):
    """Set environment variables while a process is started (spawn copies os.environ)."""
    with _environment_lock:
        saved = {name: os.environ.get(name) for name in variables}
        os.environ.update(variables)
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


class Processes:
    """Local worker processes that survive between sweeps; the default executor.

    Workers start with ``spawn`` (a clean interpreter that imports the cell function by name;
    ``fork`` is unsafe once numba's thread pools run) when the first sweep needs them, and stop
    at :meth:`close` (or the end of a ``with`` block). A worker that dies is replaced, and its
    cell retried once.

    Parameters
    ----------
    workers : int, optional
        Number of processes; default (None) or -1: one per available core.
    threads : int, optional
        numba/OpenMP/BLAS threads per process; default ``cores // workers``, at least 1.

    Examples
    --------
    >>> with Processes(4) as pool:                                # doctest: +SKIP
    ...     first = sweep(fn, cells, workers=pool)
    ...     second = sweep(fn, more_cells, workers=pool)          # same processes, warm
    """

    def __init__(self, workers=None, threads=None):
        cores = available_cores()
        if workers is None or workers == -1:
            workers = cores
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int or -1 (every core), got "
                             f"{workers!r}")
        self.workers = workers
        self.threads = threads if threads is not None else max(1, cores // workers)
        self._context = multiprocessing.get_context("spawn")
        self._pool = []

    def describe(self):
        return f"{self.workers} local worker process{'es' if self.workers > 1 else ''}"

    def _environment(self):
        return {name: str(self.threads) for name in THREAD_VARIABLES if name not in os.environ}

    def _spawn(self):
        return _Worker(self._context, self._environment())

    def __call__(self, func, iterable):
        """Map-like use (``map(func, iterable)``, results in order), for scipy-style callers."""
        items = list(iterable)
        outcomes = dict(self.run(_call_with, [(i, (func, item)) for i, item in enumerate(items)]))
        results = []
        for index in range(len(items)):
            status, payload, _ = outcomes[index]
            if status != "done":
                raise RuntimeError(f"item {index} failed: {payload}")
            results.append(_decode(payload)["value"])
        return results

    def run(self, fn, tasks, retries=1):
        """Run ``fn`` on ``tasks``, yielding results as cells finish.

        Parameters
        ----------
        fn : callable
            The cell function (importable by name).
        tasks : iterable of (int, dict)
            ``(index, cell)`` pairs.
        retries : int
            How often a cell whose worker died is run again.

        Yields
        ------
        (int, tuple)
            ``(index, (status, record or error text, seconds))``.
        """
        queue = deque(tasks)
        if not queue:
            return
        while len(self._pool) < min(self.workers, len(queue)):
            self._pool.append(self._spawn())
        attempts = {}
        busy = {}
        try:
            while queue or busy:
                for worker in self._pool:
                    if worker.index is None and queue:
                        index, cell = queue.popleft()
                        worker.index, worker.cell = index, cell
                        busy[worker.connection] = worker
                        worker.connection.send((index, fn, cell))
                waitables = list(busy) + [worker.process.sentinel for worker in busy.values()]
                ready = set(multiprocessing.connection.wait(waitables))
                for connection, worker in list(busy.items()):
                    message = None
                    if connection in ready or worker.process.sentinel in ready:
                        with contextlib.suppress(EOFError, OSError):
                            if connection.poll():
                                message = connection.recv()
                    if message is not None:
                        del busy[connection]
                        worker.index = None
                        yield message
                    elif worker.process.sentinel in ready:
                        # The worker died running this cell: replace it, retry the cell.
                        del busy[connection]
                        index, cell = worker.index, worker.cell
                        worker.process.join()
                        code = worker.process.exitcode
                        worker.stop()
                        self._pool[self._pool.index(worker)] = self._spawn()
                        attempts[index] = attempts.get(index, 0) + 1
                        if attempts[index] > retries:
                            yield index, ("failed", f"the worker process running this cell "
                                          f"died {attempts[index]} times (last exit code "
                                          f"{code})", 0.0)
                        else:
                            queue.appendleft((index, cell))
        except BaseException:
            # Interrupted (Ctrl-C) or abandoned: the cells in flight cannot be trusted to end.
            self.close()
            raise

    def close(self):
        """Stop the worker processes (a later sweep starts new ones)."""
        pool, self._pool = self._pool, []
        busy = [worker for worker in pool if worker.index is not None]
        for worker in busy:  # mid-cell: unwind it now rather than wait for the cell to end
            worker.process.terminate()
        deadline = time.monotonic() + _GRACE_SECONDS
        for worker in busy:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in pool:  # all at once: a process with numba loaded takes a while to exit
            worker.ask_to_stop()
        for worker in pool:
            worker.stop(asked=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def _call_with(task):
    func, item = task
    return {"value": func(item)}


_MISSING_DASK = ('a Dask scheduler needs dask.distributed, an optional extra of adamnb: '
                 'pip install "adamnb[distributed]"')


def require_distributed():
    """The ``distributed`` module (Dask's distributed scheduler).

    Returns
    -------
    module

    Raises
    ------
    ImportError
        When it is not installed, naming adamnb's ``distributed`` extra.
    """
    try:
        import distributed
    except ImportError as error:
        raise ImportError(_MISSING_DASK) from error
    return distributed


class _Dask:
    """Cells as tasks of a Dask distributed cluster."""

    def __init__(self, scheduler):
        distributed = require_distributed()
        self._distributed = distributed
        if isinstance(scheduler, distributed.Client):
            self.client, self._own = scheduler, False
        elif isinstance(scheduler, str):
            try:
                self.client = distributed.Client(scheduler, timeout="20s")
            except OSError as error:
                raise OSError(f"no Dask scheduler answers at {scheduler}: {error}") from None
            self._own = True
        else:
            raise TypeError(f"scheduler must be an address such as 'tcp://host:8786' or a "
                            f"dask.distributed.Client, got {type(scheduler).__name__}")
        self.workers = None

    def describe(self):
        return f"the Dask scheduler at {self.client.scheduler.address}"

    def run(self, fn, tasks, retries=1):
        distributed = self._distributed
        tag = uuid.uuid4().hex[:8]
        futures = {}
        for index, cell in tasks:
            future = self.client.submit(_run_cell, fn, cell, pure=False,
                                        key=f"adamnb-cell-{cell_key(cell)}-{tag}")
            futures[future] = index
        try:
            for future in distributed.as_completed(futures):
                index = futures[future]
                try:
                    yield index, tuple(future.result())
                except Exception as error:  # KilledWorker after Dask's own retries
                    text = "".join(traceback.format_exception_only(type(error), error)).strip()
                    yield index, ("failed", text, 0.0)
        finally:
            pending = [future for future in futures if not future.done()]
            if pending:
                with contextlib.suppress(Exception):
                    self.client.cancel(pending)

    def close(self):
        if self._own:
            with contextlib.suppress(Exception):
                self.client.close()


def executor(workers=None, scheduler=None):
    """The executor that :func:`sweep` would use, to share between several sweeps.

    Parameters
    ----------
    workers : int, map-like callable, or executor, optional
        scipy's convention: an int is a number of local processes (1: this process, in order;
        -1 or None: one per core); a callable ``workers(func, iterable)`` is used as ``map``.
    scheduler : str or dask.distributed.Client, optional
        A Dask scheduler's address (``"tcp://host:8786"``) or a client; overrides ``workers``.

    Returns
    -------
    executor
        Close it with ``close()`` or use it in a ``with`` block.

    Raises
    ------
    ImportError
        A scheduler is given and dask.distributed is not installed (the message names the
        ``distributed`` extra).
    """
    if scheduler is not None:
        return _Dask(scheduler)
    if isinstance(workers, _EXECUTORS):
        return workers
    if workers == 1:
        return _InProcess()
    if workers is None or (isinstance(workers, int) and not isinstance(workers, bool)):
        return Processes(workers)
    if callable(workers):
        return _MapLike(workers)
    raise TypeError(f"workers must be an int, a map-like callable or an executor, got "
                    f"{type(workers).__name__}")


@contextlib.contextmanager
def _closing(chosen, owned):
    try:
        yield chosen
    finally:
        if owned and hasattr(chosen, "close"):
            chosen.close()


_EXECUTORS = (Processes, _InProcess, _MapLike, _Dask)

# Every executor works in a `with` block.
for _kind in _EXECUTORS[1:]:
    _kind.__enter__ = lambda self: self
    _kind.__exit__ = lambda self, *exc: self.close()


# --- the sweep ------------------------------------------------------------------------------------

class SweepError(RuntimeError):
    """Some cells of a sweep failed; the message names each one with its error."""


class SweepResult(list):
    """The rows of a sweep, one per cell in the cells' order.

    A row is ``{**cell, **record, "status": "done", "error": None}`` for a finished cell and
    ``{**cell, "status": "failed", "error": text}`` for a failed one. :attr:`records` holds the
    records alone (None where failed), :attr:`cells` the cells.

    Attributes
    ----------
    cells : list of dict
    records : list of dict or None
    errors : list of str or None
    resumed : int
        Cells read back from the store instead of computed.
    seconds : float
        Wall time of the sweep.
    """

    def __init__(self, cells, records, errors, resumed, seconds):
        rows = []
        for cell, record, error in zip(cells, records, errors):
            if error is None:
                rows.append({**cell, **record, "status": "done", "error": None})
            else:
                rows.append({**cell, "status": "failed", "error": error})
        super().__init__(rows)
        self.cells, self.records, self.errors = cells, records, errors
        self.resumed, self.seconds = resumed, seconds

    @property
    def failed(self):
        """The rows of the cells that failed."""
        return [row for row in self if row["status"] == "failed"]

    @property
    def ok(self):
        """True when every cell finished."""
        return not any(error is not None for error in self.errors)

    def check(self, kept=""):
        """Raise :class:`SweepError` naming every failed cell, if any; ``kept`` ends the message.

        Returns
        -------
        SweepResult
            ``self``, when every cell finished.
        """
        if self.ok:
            return self
        failures = [f"{describe_cell(cell, 50)}: {error}"
                    for cell, error in zip(self.cells, self.errors) if error is not None]
        raise SweepError(f"{len(failures)} of {len(self)} cells failed ({'; '.join(failures)})"
                         f"{kept}")

    def to_frame(self):
        """The rows as a pandas DataFrame.

        Returns
        -------
        pandas.DataFrame
            One row per cell; arrays stay in object columns.

        Raises
        ------
        ImportError
            pandas is not installed.
        """
        try:
            import pandas
        except ImportError as error:
            raise ImportError("SweepResult.to_frame needs pandas (pip install pandas); the "
                              "result is a list of dicts without it") from error
        return pandas.DataFrame(list(self))


def describe_cell(cell, limit=60):
    """The cell's scalar fields as ``key=value, ...``, for progress lines and messages.

    Parameters
    ----------
    cell : dict
    limit : int
        Longest text returned (cut with "...").

    Returns
    -------
    str
    """
    text = ", ".join(f"{key}={value}" for key, value in cell.items()
                     if isinstance(value, (str, int, float, bool)) or value is None)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _Progress:
    """A tqdm bar on a terminal; one line per finished cell otherwise; or nothing."""

    def __init__(self, total, desc, show):
        self.total, self.desc, self.done = total, desc, 0
        self.terminal = sys.stderr.isatty() if show is None else show == "bar"
        self.quiet = show is False or total == 0
        self.bar = None
        if not self.quiet and self.terminal:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="cell", leave=False, file=sys.stderr)

    def skip(self, count):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif not self.quiet and count:
            print(f"{self.desc}: {count} of {self.total} cells already done in the store",
                  file=sys.stderr, flush=True)

    def update(self, cell, status, seconds):
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(1)
            if status != "done":
                self.bar.write(f"{self.desc}: {describe_cell(cell)} failed", file=sys.stderr)
            return
        width = len(str(self.total))
        print(f"{self.desc}: {self.done:>{width}}/{self.total} {describe_cell(cell)} "
              f"({status}, {seconds:.1f} s)", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``str()`` says how many cells are kept in the store for a resume."""


def sweep(fn, cells, *, workers=None, scheduler=None, store=None, retries=1, progress=None,
          desc="sweep"):
    """Run ``fn`` on every cell, on local processes or a Dask cluster; the table of records.

    Parameters
    ----------
    fn : callable
        ``fn(cell) -> dict``: runs one cell, returns a small record (numbers, strings, None,
        lists, dicts, bytes, NumPy arrays). Must be importable by name for worker processes
        (see the module notes) and depend on nothing but its cell.
    cells : sequence of dict
        Plain data: str keys; numbers, strings, booleans, None, lists and dicts as values (see
        :func:`grid`). Two equal cells are one cell to the store.
    workers : int, map-like callable or executor, optional
        Where the cells run: default one local process per core; 1: in this process, in order;
        an int: that many processes (-1: every core); a callable ``workers(func, iterable)``
        (e.g. ``multiprocessing.Pool(4).map``) as ``map``; or an executor from
        :func:`executor` / :class:`Processes`, to share one between sweeps.
    scheduler : str or dask.distributed.Client, optional
        Run on a Dask cluster instead: ``"tcp://host:8786"`` or a client.
    store : str, Path or Store, optional
        A folder for finished cells; cells found there are not run again (resume).
    retries : int, default 1
        How often a local worker's death is retried per cell.
    progress : {None, False, "bar", "lines"}
        None: a tqdm bar on a terminal, one line per finished cell (stderr) otherwise.
    desc : str
        The label of the progress display.

    Returns
    -------
    SweepResult
        One row per cell, in the order of ``cells``; failed cells have ``status == "failed"``
        and the error's text.

    Raises
    ------
    SweepInterrupted
        On Ctrl-C: the finished cells are in the store (if any), and running the same sweep
        again resumes.
    TypeError
        A cell that is not plain data.
    ImportError
        ``scheduler`` given without dask.distributed installed.

    Notes
    -----
    Every record, computed here or elsewhere or read from the store, passes through the same
    exact encoding, so a sweep gives the same table (bit for bit, wall times aside) on any
    executor, in any order, and when resumed.
    """
    cells = list(cells)
    keys = [cell_key(cell) for cell in cells]  # checks every cell before anything runs
    if store is not None and not isinstance(store, Store):
        store = Store(store)
    started = time.perf_counter()
    records = [None] * len(cells)
    errors = [None] * len(cells)
    # Equal cells run once.
    first = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    todo = []
    resumed = 0
    for key, index in first.items():
        stored = store.load(cells[index]) if store is not None else None
        if stored is not None:
            records[index] = stored
            resumed += 1
        else:
            todo.append((index, cells[index]))
    shown = _Progress(len(first), desc, progress)
    shown.skip(resumed)
    # An executor passed in stays open for the caller's next sweep; one made here is closed (a
    # Dask client made from an address is closed, a client passed in is not).
    owned = not isinstance(workers, _EXECUTORS) or scheduler is not None
    chosen = executor(workers, scheduler)
    try:
        with _closing(chosen, owned):
            for index, (status, payload, seconds) in chosen.run(fn, todo, retries=retries):
                if status == "done":
                    record = _decode(payload)
                    if store is not None:
                        store.save(cells[index], record)
                    records[index] = record
                else:
                    errors[index] = payload
                shown.update(cells[index], status, seconds)
    except KeyboardInterrupt:
        kept = (f"; {len(store)} finished cells are kept in {store.folder}: run the same sweep "
                "again to resume" if store is not None else "")
        raise SweepInterrupted(f"{desc} interrupted{kept}") from None
    finally:
        shown.close()
    for other, key in enumerate(keys):
        index = first[key]
        records[other], errors[other] = records[index], errors[index]
    return SweepResult(cells, records, errors, resumed, time.perf_counter() - started)


def chunks(total, size):
    """``(start, stop)`` pairs covering ``range(total)`` in pieces of at most ``size``.

    Parameters
    ----------
    total, size : int

    Returns
    -------
    list of (int, int)
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def run_minimize(cell):
    """One :func:`adamnb.minimize` run of a built-in test problem, as a sweep cell: the common
    cell function, ready for :func:`sweep` on any executor.

    Parameters
    ----------
    cell : dict
        ``problem`` (a name of :data:`adamnb.problems.FUNCTIONS`), ``method`` (default
        "adam"), optionally ``dim`` (for the scalable problems), ``x0`` (a list; default the
        problem's standard start) or ``seed`` (a start drawn uniformly from the problem's domain
        with ``numpy.random.default_rng(seed)``), and any options of the method and the driver
        (``lr``, ``maxiter``, ``gtol``, ``beta2``, ...).

    Returns
    -------
    dict
        ``fun``, ``gap`` (f - f*), ``nit``, ``status`` and ``x`` (a list) of the run.

    Raises
    ------
    ValueError
        An unknown problem, method or option value (the sweep records it as a failed cell).
    """
    from adamnb.optimize import minimize
    from adamnb.problems import get

    cell = dict(cell)
    problem = get(cell.pop("problem"), n=cell.pop("dim", None))
    method = cell.pop("method", "adam")
    if "seed" in cell:
        low, high = problem.domain
        x0 = np.random.default_rng(cell.pop("seed")).uniform(low, high, size=problem.x0.shape)
    else:
        x0 = np.asarray(cell.pop("x0", problem.x0), dtype=float)
    res = minimize(problem.value_and_grad, x0, method=method, jac=True, options=cell)
    return {"fun": res.fun, "gap": res.fun - problem.fmin, "nit": int(res.nit),
            "status": int(res.status), "x": res.x.tolist()}
