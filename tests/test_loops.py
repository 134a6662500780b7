"""The compiled fast path and batched starts give the Python path's results, bit for bit."""

import math

import numba
import numpy as np
import pytest

import adamnb
from adamnb.optim import rules
from adamnb.optimize import _compiled as _loops
from adamnb.problems.functions import get, rosenbrock_grad, rosenbrock_value_and_grad
from tests.objectives import into_allocation_free, into_calling_an_allocating_helper, with_into

ROSENBROCK = get("rosenbrock")


def python_wrapped(function):
    """The same jitted function behind a Python lambda: forces minimize's Python path."""
    return lambda x, *args: function(x, *args)


def compiled(options):
    """``options`` asking for the compiled loop (short runs take the host loop by default)."""
    return {**options, "compiled": True}


@pytest.mark.parametrize("method", ["adam", "sgd", "rmsprop", "nadam", "radam", "adamax",
                                    "adagrad", "adadelta", "amsgrad", "adamw"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_path_equals_python_path(method, dtype):
    x0 = np.array([-1.2, 1.0], dtype=dtype)
    options = {"lr": 1e-3, "maxiter": 700, "return_all": True, "gtol": 1e-12}
    fast = adamnb.minimize(ROSENBROCK.value_and_grad, x0, method=method, jac=True,
                           bounds=[(-1.1, 2.0), (None, 1.05)], options=compiled(options))
    slow = adamnb.minimize(python_wrapped(ROSENBROCK.value_and_grad), x0, method=method,
                           jac=True, bounds=[(-1.1, 2.0), (None, 1.05)], options=options)
    assert fast.x.dtype == dtype and fast.x.tobytes() == slow.x.tobytes()
    assert fast.jac.tobytes() == slow.jac.tobytes() and fast.fun == slow.fun
    for key in ("nit", "nfev", "njev", "status", "message"):
        assert fast[key] == slow[key], key
    assert len(fast.allvecs) == len(slow.allvecs) == 701
    assert np.array_equal(fast.fun_history, slow.fun_history)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(fast.allvecs, slow.allvecs))


def test_compiled_path_with_separate_fun_and_jac_and_gtol():
    options = {"lr": 0.02, "maxiter": 20000, "gtol": 1e-6}
    fast = adamnb.minimize(ROSENBROCK.fun, ROSENBROCK.x0, jac=ROSENBROCK.grad,
                           options=compiled(options))
    slow = adamnb.minimize(python_wrapped(ROSENBROCK.fun), ROSENBROCK.x0,
                           jac=python_wrapped(ROSENBROCK.grad), options=options)
    assert fast.status == slow.status == 0 and fast.nit == slow.nit < 20000
    assert fast.x.tobytes() == slow.x.tobytes()


def test_compiled_path_reports_nan_like_the_python_path():
    @numba.njit
    def blows_up(x):
        f = x[0] * x[0]
        if x[0] > 2.0:
            f = np.nan
        return f, 2.0 * x

    options = {"lr": 1.2, "maxiter": 100}  # diverges: |x| grows by 1.4 per step
    fast = adamnb.minimize(blows_up, np.array([-0.5]), method="sgd", jac=True,
                           options=compiled(options))
    slow = adamnb.minimize(python_wrapped(blows_up), np.array([-0.5]), method="sgd", jac=True,
                           options=options)
    assert fast.status == slow.status == 3 and fast.nit == 4 and abs(fast.x[0]) > 1.9
    assert fast.x.tobytes() == slow.x.tobytes() and fast.nit == slow.nit
    assert np.isfinite(fast.fun)


def test_compiled_path_passes_args():
    @numba.njit
    def shifted(x, shift):
        return float(np.sum((x - shift) ** 2)), 2.0 * (x - shift)

    res = adamnb.minimize(shifted, np.zeros(3), args=(1.5,), jac=True,
                          options=compiled({"lr": 0.1, "maxiter": 5000}))
    assert res.success and np.allclose(res.x, 1.5, atol=1e-5)


def test_callbacks_send_the_run_down_the_python_path():
    seen = []
    res = adamnb.minimize(ROSENBROCK.value_and_grad, ROSENBROCK.x0, jac=True,
                          callback=seen.append, options={"maxiter": 50, "gtol": 0})
    assert len(seen) == 50 and seen[-1].tobytes() == res.x.tobytes()


def test_batched_starts_equal_single_runs():
    rng = np.random.default_rng(0)
    starts = rng.uniform(-2, 2, size=(64, 2))
    options = {"lr": 0.01, "maxiter": 3000, "gtol": 1e-7}
    batch = adamnb.minimize_batch(ROSENBROCK.value_and_grad, starts, jac=True, options=options)
    assert batch.x.shape == (64, 2) and batch.status.shape == (64,)
    for j in range(64):
        single = adamnb.minimize(ROSENBROCK.value_and_grad, starts[j], jac=True, options=options)
        assert batch.x[j].tobytes() == single.x.tobytes(), j
        assert (batch.nit[j], batch.status[j], batch.fun[j]) == \
            (single.nit, single.status, single.fun)
    assert batch.fun[batch.best] == batch.fun.min()


def test_multistart_finds_rastrigins_global_minimum():
    rastrigin = get("rastrigin", n=2)
    starts = np.random.default_rng(1).uniform(-5.12, 5.12, size=(500, 2))
    res = adamnb.minimize_batch(rastrigin.value_and_grad, starts, jac=True,
                                options={"lr": 0.05, "maxiter": 2000})
    assert res.fun[res.best] < 1e-8
    assert np.median(res.fun) > 1.0  # most single starts end in a local minimum


def test_batched_bad_input():
    with pytest.raises(ValueError, match="numba-jitted"):
        adamnb.minimize_batch(lambda x: (0.0, x), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"shape \(k, n\)"):
        adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.array([[np.nan, 1.0]]))


# --- The allocation-free gradient protocol (``into``) -------------------------------------------

@numba.njit
def _allocating_value_and_grad(x):
    """Rosenbrock's jitted value_and_grad without an ``into``: the allocating protocol."""
    return rosenbrock_value_and_grad(x)


@numba.njit
def _allocating_grad(x):
    return rosenbrock_grad(x)


def _protocols():
    """(protocol name, fun, jac) for the four ways the compiled loop calls an objective."""
    return [("value_and_grad_into", ROSENBROCK.value_and_grad, True),
            ("value_and_grad", _allocating_value_and_grad, True),
            ("fun_and_jac_into", ROSENBROCK.fun, ROSENBROCK.grad),
            ("fun_and_jac", ROSENBROCK.fun, _allocating_grad)]


def test_gradient_protocol_picks_into_where_present():
    for name, fun, jac in _protocols():
        assert _loops.gradient_protocol(fun, jac)[0] == name
    protocol, fun, jac = _loops.gradient_protocol(ROSENBROCK.value_and_grad, True)
    assert fun is jac is ROSENBROCK.value_and_grad_into


BOUNDS = [(-1.1, 2.0), (None, 1.05)]


@pytest.mark.parametrize("method, dtype, bounds, record", [
    ("adam", np.float64, None, False), ("adam", np.float32, BOUNDS, True),
    ("nadam", np.float64, BOUNDS, False), ("radam", np.float32, None, True),
    ("sgd", np.float64, None, False)])
def test_every_protocol_gives_the_python_paths_bits(method, dtype, bounds, record):
    x0 = np.array([-1.2, 1.0], dtype=dtype)
    options = {"lr": 1e-3, "maxiter": 301, "gtol": 1e-12, "return_all": record}
    slow = adamnb.minimize(python_wrapped(ROSENBROCK.value_and_grad), x0, method=method,
                           jac=True, bounds=bounds, options=options)
    for name, fun, jac in _protocols():
        fast = adamnb.minimize(fun, x0, method=method, jac=jac, bounds=bounds,
                               options=compiled(options))
        assert fast.x.tobytes() == slow.x.tobytes(), name
        assert fast.jac.tobytes() == slow.jac.tobytes() and fast.fun == slow.fun, name
        assert (fast.nit, fast.nfev, fast.njev, fast.status) == \
            (slow.nit, slow.nfev, slow.njev, slow.status), name
        if record:
            assert np.array_equal(fast.fun_history, slow.fun_history)
            assert all(a.tobytes() == b.tobytes() for a, b in zip(fast.allvecs, slow.allvecs))


@pytest.mark.parametrize("method", ["nadam", "adam"])
def test_long_runs_over_many_blocks_give_the_python_paths_bits(method):
    """Tables of 4096, 4096 and 8192 steps and a last one of odd length (617 steps), with
    gtol > 0 and gtol = 0: the same bits as the Python path's tables of 512 steps. NAdam carries
    its momentum product from block to block."""
    x0 = np.array([-1.2, 1.0])
    for gtol in (1e-300, 0.0):
        options = {"lr": 1e-4, "maxiter": 17_001, "gtol": gtol}
        fast = adamnb.minimize(ROSENBROCK.value_and_grad, x0, method=method, jac=True,
                               options=compiled(options))
        slow = adamnb.minimize(python_wrapped(ROSENBROCK.value_and_grad), x0, method=method,
                               jac=True, options=options)
        assert fast.nit == slow.nit == 17_001
        assert fast.x.tobytes() == slow.x.tobytes() and fast.jac.tobytes() == slow.jac.tobytes()
        assert fast.fun == slow.fun


@numba.njit
def _blows_up_into(x, g):
    f = x[0] * x[0]
    if x[0] > 2.0:
        f = np.nan
    for i in range(x.size):
        g[i] = 2.0 * x[i]
    return f


@numba.njit
def _blows_up(x):
    g = np.empty_like(x)
    return _blows_up_into(x, g), g


_blows_up.into = _blows_up_into


@pytest.mark.parametrize("lr", [1.2, 1.1, 1.05, 1.02])
def test_nan_with_two_gradient_buffers_returns_the_last_finite_iterate(lr):
    """Whatever the parity of the steps taken (the loop swaps its two gradient buffers after
    each step), status 3 returns the last finite x with its own f and gradient."""
    options = {"lr": lr, "maxiter": 100}
    fast = adamnb.minimize(_blows_up, np.array([-0.5]), method="sgd", jac=True,
                           options=compiled(options))
    slow = adamnb.minimize(python_wrapped(_blows_up), np.array([-0.5]), method="sgd", jac=True,
                           options=options)
    assert fast.status == slow.status == 3 and fast.nit == slow.nit
    assert fast.x.tobytes() == slow.x.tobytes() and fast.jac.tobytes() == slow.jac.tobytes()
    assert fast.fun == slow.fun and fast.jac[0] == 2.0 * fast.x[0]


def test_into_is_what_the_compiled_loop_calls():
    """A function's ``into`` is trusted: here it deliberately differs (half the gradient)."""
    @numba.njit
    def half_into(x, g):
        for i in range(x.size):
            g[i] = x[i]
        return 0.5 * float(x @ x)

    @numba.njit
    def quadratic(x):
        return 0.5 * float(x @ x), 2.0 * x

    options = {"lr": 0.1, "maxiter": 10, "gtol": 0, "compiled": True}
    quadratic.into = half_into
    with_into = adamnb.minimize(quadratic, np.ones(3), method="sgd", jac=True, options=options)
    # The gradient at x0 comes from quadratic itself (x *= 0.8), the other nine from half_into.
    np.testing.assert_allclose(with_into.x, 0.8 * 0.9 ** 9)
    del quadratic.into
    without = adamnb.minimize(quadratic, np.ones(3), method="sgd", jac=True, options=options)
    np.testing.assert_allclose(without.x, 0.8 ** 10)


def test_a_disk_cache_miss_is_remembered_until_the_index_changes(tmp_path, monkeypatch):
    # jit.ready decides the compiled route on every call of minimize; a miss used to read and
    # unpickle the whole cache index each time (milliseconds per call in the main experiment).
    import importlib
    import sys

    from adamnb.backends import jit

    (tmp_path / "probe_module.py").write_text(
        "from adamnb.backends.jit import jit\n\n@jit\ndef plus_one(x):\n    return x + 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "probe_module", raising=False)
    module = importlib.import_module("probe_module")
    first = module.plus_one
    second = importlib.reload(module).plus_one  # same function, same cache index, new dispatcher
    loads, original = [], second._cache.load_overload
    monkeypatch.setattr(second._cache, "load_overload",
                        lambda *a: loads.append(1) or original(*a))
    assert not jit.ready(second, (1.0,)) and not jit.ready(second, (1.0,))
    assert len(loads) == 1  # the second probe did not read the index again
    assert first(1.0) == 2.0  # compiles and writes the index
    assert jit.ready(second, (1.0,)) and len(loads) == 2  # the index changed: read, and found
    assert second(1.0) == 2.0


@pytest.mark.parametrize("form", ["strided", "read-only", "float32", "list", "int"])
def test_the_host_path_takes_a_gradient_of_any_layout_and_type(form):
    # The host loop copies the gradient and measures it in one compiled call, typed by numba per
    # call; a gradient of another layout or dtype must give what its contiguous copy gives.
    rosenbrock = get("rosenbrock")

    def grad(x):
        g = rosenbrock.grad(x)
        if form == "int":
            return np.rint(g).astype(np.int64)
        return g

    def as_form(x):
        g = grad(x)
        if form == "strided":
            return np.repeat(g, 2)[::2]
        if form == "read-only":
            g.flags.writeable = False
            return g
        if form == "float32":
            return g.astype(np.float32)
        if form == "list":
            return g.tolist()
        return g

    def plain(x):
        g = grad(x)
        return g.astype(np.float32).astype(np.float64) if form == "float32" else g

    options = {"lr": 1e-3, "maxiter": 1200, "gtol": 1e-12, "compiled": False}  # three blocks
    expected = adamnb.minimize(rosenbrock.fun, rosenbrock.x0, jac=plain, options=options)
    got = adamnb.minimize(rosenbrock.fun, rosenbrock.x0, jac=as_form, options=options)
    assert got.x.tobytes() == expected.x.tobytes() and got.jac.tobytes() == expected.jac.tobytes()
    assert (got.nit, got.nfev, got.njev, got.status) == (expected.nit, expected.nfev,
                                                          expected.njev, expected.status)


@pytest.mark.parametrize("into, adapted", [(into_allocation_free, False),
                                           (into_calling_an_allocating_helper, True)])
def test_the_loop_runs_without_numbas_runtime_and_an_allocating_objective_behind_an_adapter(
        into, adapted):
    """Without numba's runtime a loop touches no reference count per step (three times faster
    on an Intel Xeon; 215 against 51 to 62 ns a step for an allocating Rosenbrock on an AMD
    EPYC). An allocation-free ``into`` is compiled into such a loop; an objective that allocates is called
    through an adapter compiled first with the runtime, which frees what it allocates (compiled
    inside the loop, it would not: that loop leaked 140 bytes a step). Both give the host loop's
    bits."""
    fun = with_into(into)
    x0 = np.array([1.0, -0.5])
    options = {"lr": 0.01, "maxiter": 300, "gtol": 0}
    compiled_run = adamnb.minimize(fun, x0, jac=True, options=compiled(options))
    host_run = adamnb.minimize(python_wrapped(fun), x0, jac=True, options=options)
    assert compiled_run.x.tobytes() == host_run.x.tobytes()
    rule = rules.get_rule("adam")
    arguments = ((), x0, 0.0, x0, x0, x0, 0.0, np.zeros((2, 2)), np.zeros(0),
                 np.zeros((rule.n_coefficients, 1)), x0, np.empty(0), np.empty(0), 0.0,
                 np.empty(0), np.empty((0, 2)), np.zeros(3, dtype=np.int64))
    loop = _loops.compile_loop(rule, fun, True, False, 0, False, arguments)
    assert loop is _loops.compiled_loop(rule, fun, True, False, 0, False, nrt=False,
                                        adapted=adapted)


_LEAK_CHECK = """
import numba, numpy as np, adamnb
from numba.core.runtime import rtsys
from tests.objectives import into_calling_an_allocating_helper, with_into

@numba.njit
def allocating(x, scale):
    g = np.empty_like(x)
    g[0] = 2.0 * scale * x[0]
    g[1] = 4.0 * scale * x[1]
    return scale * (x[0] * x[0] + 2.0 * x[1] * x[1]), g

@numba.njit
def value(x, scale):
    return scale * (x[0] * x[0] + 2.0 * x[1] * x[1])

@numba.njit
def gradient(x, scale):
    return np.array([2.0 * scale * x[0], 4.0 * scale * x[1]])

runs = [(allocating, True, (1.5,)), (value, gradient, (1.5,)),
        (with_into(into_calling_an_allocating_helper), True, ())]
options = {"lr": 0.01, "maxiter": 5000, "gtol": 0, "compiled": True}
for fun, jac, args in runs:
    adamnb.minimize(fun, np.array([1.0, -0.5]), jac=jac, args=args, options=options)
    before = rtsys.get_allocation_stats()
    adamnb.minimize(fun, np.array([1.0, -0.5]), jac=jac, args=args, options=options)
    after = rtsys.get_allocation_stats()
    allocated, freed = after.alloc - before.alloc, after.free - before.free
    assert allocated >= 5000 and allocated == freed, (fun, allocated, freed)
print("no leak")
"""


def test_an_allocating_objective_leaks_nothing_in_the_compiled_loop():
    """numba's allocation statistics (on only when set before numba loads: a process of its
    own) over 5000 compiled steps of each allocating form: every array is freed."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _LEAK_CHECK], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "NUMBA_NRT_STATS": "1"}, timeout=600)
    assert done.returncode == 0 and "no leak" in done.stdout, done.stderr[-3000:]


def test_bias_correction_powers_are_numpys_pow_of_the_capped_step():
    """``power(base, t)`` (one ``pow`` for every step past the cap) against NumPy's
    ``base ** min(t, cap)`` of every step, in any order of steps: the same bits. (NumPy's pow of
    an array is not the C library's that Python's float pow calls: 139 of the first 3000
    powers of 0.9 differ from Python's in the last bit.)"""
    from adamnb.optim._rule import power
    for base in (0.9, 0.999, 0.5, 0.99999):
        cap = int(200 * math.log(2.0) / -math.log(base)) + 1
        steps = np.concatenate([np.arange(1, 3000), np.arange(cap - 5, cap + 5),
                                [cap * 3, 7, cap + 1, 1, 2]])
        expected = np.float64(base) ** np.minimum(steps, cap).astype(np.float64)
        assert power(base, steps).tobytes() == expected.tobytes()
        assert power(base, steps.reshape(-1, 2)).tobytes() == expected.tobytes()
        assert float(power(base, 12345)) == base ** float(min(12345, cap))


def test_kept_powers_are_numpys_pow_as_the_memo_grows_and_drops_bases():
    """The powers ``power`` keeps per base (computed once per process, grown by doublings, the
    oldest base dropped) against NumPy's ``base ** min(t, cap)`` of the same steps: blocks of a
    run in order, steps past what is kept, an unsorted array, a float32 base, and more bases than
    are kept."""
    from adamnb.optim import _rule
    bases = [0.9, 0.999, 0.99999, np.float32(0.999)] + list(np.linspace(0.5, 0.995, 20))
    for base in bases:
        cap = int(200 * math.log(2.0) / -math.log(float(base))) + 1
        blocks = [np.arange(1, 4097), np.arange(4097, 8193), np.arange(8193, 16385),
                  np.arange(16385, 32769), np.arange(32769, _rule.POWER_MEMO_STEPS + 1),
                  np.arange(_rule.POWER_MEMO_STEPS - 3, _rule.POWER_MEMO_STEPS + 9),
                  np.array([cap + 10, 3, cap, 1, cap - 1, 0])]
        for steps in blocks:
            expected = np.float64(base) ** np.minimum(steps, cap).astype(np.float64)
            assert _rule.power(base, steps).tobytes() == expected.tobytes(), (base, steps[:3])
        assert len(_rule._powers) <= _rule.POWER_MEMO_BASES
        kept, _ = _rule._powers[float(base)]
        assert kept.size == min(cap, _rule.POWER_MEMO_STEPS) + 1
    # Steps past the cap of a base whose cap is past what is kept (NumPy's pow of an array,
    # which Python's float pow is not), unsigned steps past what take() reads as an index, and
    # a base asked for far into a run, whose powers are then not computed from step 0 and kept.
    for base in (0.99995, 0.999999999):
        cap = int(200 * math.log(2.0) / -math.log(base)) + 1
        steps = np.array([1, cap - 1, cap, cap + 1, 10 * cap])
        expected = base ** np.minimum(steps, cap).astype(np.float64)
        assert _rule.power(base, steps).tobytes() == expected.tobytes(), base
    steps = np.array([2**63, 1, 2**64 - 1], dtype=np.uint64)
    expected = 0.9 ** np.minimum(steps, 1316).astype(np.float64)
    assert _rule.power(0.9, steps).tobytes() == expected.tobytes()
    steps = np.arange(60_000, 60_512)  # (0.99987's cap is past step 1,000,000)
    expected = 0.99987 ** steps.astype(np.float64)
    assert _rule.power(0.99987, steps).tobytes() == expected.tobytes()
    assert 0.99987 not in _rule._powers


def test_kept_powers_from_threads_at_once_are_numpys_pow():
    """Four threads asking for the powers of the same new bases at once, over growing ranges of
    steps (a block's scalars are computed on a second thread while another run computes its
    first block): every answer is NumPy's ``base ** min(t, cap)``."""
    import threading

    from adamnb.optim import _rule
    bases = (0.91234, 0.998765, 0.99991)
    failures = []

    def ask(seed):
        rng = np.random.default_rng(seed)
        for _ in range(40):
            base = bases[rng.integers(len(bases))]
            first = int(rng.integers(1, 60_000))
            steps = np.arange(first, first + int(rng.integers(1, 9000)))
            cap = int(200 * math.log(2.0) / -math.log(base)) + 1
            expected = base ** np.minimum(steps, cap).astype(np.float64)
            if _rule.power(base, steps).tobytes() != expected.tobytes():
                failures.append((base, first, steps.size))

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


_FORK_WITH_POWERS_LOCK_HELD = """
import multiprocessing, threading, time, numpy as np
from adamnb.optim import _rule

def child(_):
    return float(_rule.power(0.987654, np.arange(1, 100))[-1])

held = threading.Event()

def hold():
    with _rule._powers_lock:  # as the scalars' thread does while it grows the kept powers
        held.set()
        time.sleep(2)

threading.Thread(target=hold).start()
held.wait()
with multiprocessing.get_context("fork").Pool(1) as pool:
    print("done", pool.map(child, [0]))
"""


def test_a_process_forked_while_powers_are_being_kept_does_not_wait_for_them():
    """The lock of the kept powers is new in a forked process: a sweep's worker forked while
    the scalars' thread grows the kept powers (a run that has just converged, its next block
    still computed) would otherwise wait for a lock no thread of its own will release."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _FORK_WITH_POWERS_LOCK_HELD], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]


_FROZEN_GLOBAL = """
import numba
import numpy as np

TARGET = 1.0


@numba.njit
def fg_into(x, g):
    s = 0.0
    for i in range(x.size):
        d = x[i] - TARGET
        s += d * d
        g[i] = 2.0 * d
    return s


@numba.njit
def fg(x):
    g = np.empty_like(x)
    return fg_into(x, g), g


fg.into = fg_into
"""


def test_a_global_rebound_after_the_users_compile_does_not_reach_the_compiled_loop():
    """numba freezes a global's value when it compiles a function; a notebook may rebind it
    later. The compiled loop used to inline a copy of the user's ``into`` compiled then, which
    read the new value: it minimised another function than the user's (x = 5, where the user's
    function is 48) and reported success. Such a function is now called, as the host loop
    calls it."""
    namespace = {}
    exec(_FROZEN_GLOBAL, namespace)
    fg, x0 = namespace["fg"], np.zeros(3)
    fg(x0)  # numba compiles fg and fg_into here, with TARGET = 1.0
    namespace["TARGET"] = 5.0
    options = {"lr": 0.05, "maxiter": 3000}
    host = adamnb.minimize(fg, x0, jac=True, options={**options, "compiled": False})
    loop = adamnb.minimize(fg, x0, jac=True, options={**options, "compiled": True})
    assert np.allclose(host.x, 1.0, atol=1e-3)
    assert loop.x.tobytes() == host.x.tobytes()


def test_a_compiled_run_of_many_blocks_is_the_host_loops():
    """50,000 steps: compiled blocks of 4096 doubling to 32768 steps, each block's scalars
    computed on another thread while the previous block runs; the host loop's bits."""
    options = {"lr": 1e-3, "maxiter": 50_000, "gtol": 1e-300}
    x0 = np.array([-1.5, 2.0])
    compiled_run = adamnb.minimize(ROSENBROCK.value_and_grad, x0, jac=True,
                                   options=compiled(options))
    host_run = adamnb.minimize(python_wrapped(ROSENBROCK.value_and_grad), x0, jac=True,
                               options=options)
    assert compiled_run.nit == host_run.nit == 50_000
    assert compiled_run.x.tobytes() == host_run.x.tobytes()
    assert compiled_run.jac.tobytes() == host_run.jac.tobytes()


_FORKED_RUNS = """
import multiprocessing, numpy as np, adamnb
from adamnb.problems.functions import get
rosenbrock = get("rosenbrock")
options = {"lr": 1e-3, "maxiter": 20000, "gtol": 1e-300, "compiled": True}

def run(_):
    return adamnb.minimize(rosenbrock.value_and_grad, np.array([-1.5, 2.0]), jac=True,
                           options=options).x.tobytes()

here = run(0)  # starts this process's thread for the blocks' scalars
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert pool.map(run, range(2)) == [here, here]
print("done")
"""


def test_a_process_forked_after_a_compiled_run_runs_compiled_too():
    """The blocks' scalars are computed on a thread of the process; a forked worker (a sweep's,
    on Linux) inherits the executor but not its thread: it starts its own instead of waiting
    forever (it did, before)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _FORKED_RUNS], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-3000:]


def test_numpys_error_settings_reach_every_block_of_a_compiled_run():
    """The blocks after the first have their scalars computed on another thread, in the
    caller's context: an overflow of the schedule at step ~35,800 (the ninth block) raises under
    ``np.errstate(over="raise")`` on both paths, as it does in the host loop."""
    schedule = adamnb.optim.schedules.Exponential(1e-300, 1.02)
    options = {"lr": schedule, "maxiter": 40_000, "gtol": 0}
    x0 = np.array([-1.5, 2.0])
    for fun, extra in ((ROSENBROCK.value_and_grad, {"compiled": True}),
                       (python_wrapped(ROSENBROCK.value_and_grad), {"compiled": False})):
        with np.errstate(over="raise"), pytest.raises(FloatingPointError, match="overflow"):
            adamnb.minimize(fun, x0, jac=True, options={**options, **extra})


_AFTER_MAIN = """
import threading, time, numpy as np, adamnb
from adamnb.problems.functions import get
rosenbrock = get("rosenbrock")

def run():
    time.sleep(0.5)  # the main thread has returned: the interpreter is shutting down
    res = adamnb.minimize(rosenbrock.value_and_grad, np.array([-1.5, 2.0]), jac=True,
                          options={"lr": 1e-3, "maxiter": 20000, "gtol": 0, "compiled": True})
    print("done", res.nit)

adamnb.minimize(rosenbrock.value_and_grad, np.array([-1.5, 2.0]), jac=True,
                options={"lr": 1e-3, "maxiter": 20000, "gtol": 0, "compiled": True})
threading.Thread(target=run).start()
"""


def test_a_compiled_run_from_a_thread_that_outlives_the_main_one_finishes():
    """At shutdown no new work goes to the scalars' thread: the blocks are computed in the
    caller's thread (before: 'cannot schedule new futures after shutdown')."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", _AFTER_MAIN], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "done 20000" in done.stdout, done.stderr[-3000:]
