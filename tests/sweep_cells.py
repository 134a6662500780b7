"""Cell functions for the sweep tests: importable by name, as worker processes need them."""

import os
import time
from pathlib import Path

import numpy as np

import adamnb
from adamnb.problems.functions import get


def optimize(cell):
    """A real cell: one adamnb run of a test function; its numbers and iterates."""
    tf = get(cell["function"])
    result = adamnb.minimize(tf.fun, tf.x0, method=cell["method"], jac=tf.grad,
                             options={"lr": cell["lr"], "maxiter": cell["steps"],
                                      "return_all": True})
    if cell.get("calls"):  # leave a mark per call, to count computations
        marks = Path(cell["calls"])
        marks.mkdir(parents=True, exist_ok=True)
        name = f"{cell['function']}-{cell['method']}-{cell['lr']}-{os.getpid()}"
        (marks / f"{name}-{time.monotonic_ns()}").touch()
    if cell.get("sleep"):
        time.sleep(cell["sleep"])
    return {"fun": result.fun, "x": result.x, "nit": result.nit, "status": result.status,
            "fun_history": result.fun_history, "path": np.array(result.allvecs)}


def failing(cell):
    """Raises for odd x: an objective that fails."""
    if cell["x"] % 2:
        raise ArithmeticError(f"objective failed at x = {cell['x']}")
    return {"y": cell["x"] ** 2}


def dying(cell):
    """Kills its own process: once (when ``once`` names a marker file not yet there) or always."""
    if cell.get("once"):
        marker = Path(cell["once"])
        if not marker.exists():
            marker.touch()
            os._exit(17)
    elif cell.get("always"):
        os._exit(18)
    return {"x": cell["x"], "pid": os.getpid()}


def square(x):
    """For map-like use."""
    return x * x


def sleepy(cell):
    """A slow cell without compiled code: marks its call, sleeps, returns its x."""
    marks = Path(cell["calls"])
    marks.mkdir(parents=True, exist_ok=True)
    (marks / f"{cell['x']}-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(cell["sleep"])
    # "hold": cells from x = 3 on wait (at most a minute) for that file to exist, so that a test
    # can interrupt a sweep that is certainly still running, however loaded the machine
    if cell.get("hold") and cell["x"] >= 3:
        deadline = time.monotonic() + 60
        while not Path(cell["hold"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return {"x": cell["x"], "square": float(cell["x"]) ** 2}
