"""The opt-in fast mode (``options={"fast": True}``) and the ``compiled`` option.

Fast mode compiles the loops with fused multiply-adds and reciprocals
(:data:`adamnb.backends.jit.FAST_MATH`): other rounding, so not the exact path's bits. Its stated
tolerance (``docs/benchmarks.md``, minimize's Notes), held here against the exact path:

* one step of every rule, coordinate by coordinate: within 4 units in the last place of the
  exact new ``x`` plus ``1e-14`` of the step's length;
* 2000 steps of every rule on the ill-conditioned 10-D quadratic (a convex problem, where
  rounding differences do not grow): within ``1e-12`` of ``|x0|``.

On a non-convex problem the two paths are different trajectories at the last-place level, which
the problem may amplify; both reach the same minimum (checked on Rosenbrock).
"""

import numba
import numpy as np
import pytest

import adamnb
from adamnb.problems.functions import get
from adamnb.optim.rules import VECTOR_RULES
from adamnb.optimize import _compiled

QUADRATIC = get("quadratic", n=10)
ROSENBROCK = get("rosenbrock")
#: Learning rates that keep 2000 steps on the quadratic (curvatures 1 to 1000) stable (SGD and
#: ASGD need lr < 2/1000). Adan at 0.01 oscillates in the stiff coordinates (f rises and falls),
#: where any rounding difference grows to 1e-4 of x0 between the two modes; at 0.003 it contracts.
STABLE_LR = {"sgd": 1e-3, "asgd": 1e-3, "adadelta": 1.0, "adagrad": 0.05, "adan": 3e-3}


def run(method, x0, fast, **options):
    """The fast compiled loop, or the exact path. The exact path runs minimize's host loop: the
    exact compiled loop gives its bits (tests/test_loops.py), and the host loop's kernels are
    shared with the rest of the suite where a compiled loop per rule and objective would be
    compiled for this test alone."""
    return adamnb.minimize(QUADRATIC.value_and_grad, x0, method=method, jac=True,
                           options={"gtol": 0, "compiled": bool(fast), "fast": fast, **options})


#: Muon updates matrix groups, which run in the host loop only (no compiled loop, no fast mode).
COMPILED_METHODS = list(VECTOR_RULES)


@pytest.mark.parametrize("method", COMPILED_METHODS)
def test_fast_mode_stays_within_its_stated_tolerance(method):
    rng = np.random.default_rng(0)
    lr = STABLE_LR.get(method, 0.01)
    for _ in range(3):
        x0 = rng.uniform(-3, 3, 10)
        exact, fast = (run(method, x0, mode, maxiter=1, lr=lr).x for mode in (False, True))
        bound = 4 * np.spacing(np.abs(exact)) + 1e-14 * np.abs(x0 - exact)
        assert np.all(np.abs(fast - exact) <= bound)
        exact, fast = (run(method, x0, mode, maxiter=2000, lr=lr) for mode in (False, True))
        assert exact.status == fast.status == 1
        assert np.abs(fast.x - exact.x).max() <= 1e-12 * np.abs(x0).max()


def test_fast_mode_is_other_arithmetic_and_reaches_the_same_minimum():
    options = {"lr": 0.01, "maxiter": 20000, "gtol": 0, "compiled": True}
    exact = adamnb.minimize(ROSENBROCK.value_and_grad, ROSENBROCK.x0, jac=True, options=options)
    fast = adamnb.minimize(ROSENBROCK.value_and_grad, ROSENBROCK.x0, jac=True,
                           options={**options, "fast": True})
    assert exact.x.tobytes() != fast.x.tobytes()  # the mode does change the arithmetic
    np.testing.assert_allclose(fast.x, [1.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(exact.x, [1.0, 1.0], atol=1e-3)


def test_fast_mode_in_minimize_batch():
    starts = np.random.default_rng(1).uniform(-3, 3, size=(20, 10))
    options = {"lr": 0.01, "maxiter": 500, "gtol": 0}
    exact = adamnb.minimize_batch(QUADRATIC.value_and_grad, starts, jac=True, options=options)
    fast = adamnb.minimize_batch(QUADRATIC.value_and_grad, starts, jac=True,
                                 options={**options, "fast": True})
    assert np.abs(fast.x - exact.x).max() <= 1e-12 * np.abs(starts).max()


def test_fast_and_exact_loops_are_distinct_compiled_functions():
    """numba's disk-cache key leaves out the compile options: the two loops must differ in their
    closures, or one would load the other's machine code."""
    rule = adamnb.optim.rules.get_rule("adam")
    exact = _compiled.compiled_loop(rule, ROSENBROCK.value_and_grad, True, False)
    fast = _compiled.compiled_loop(rule, ROSENBROCK.value_and_grad, True, False, fast=True)
    assert exact is not fast
    cells = lambda loop: [cell.cell_contents for cell in loop.py_func.__closure__]  # noqa: E731
    assert cells(exact) != cells(fast)


@numba.njit
def _quadratic(x):
    return float(x @ x), 2.0 * x


def test_compiled_option():
    x0 = np.ones(3)
    with pytest.raises(ValueError, match="callback"):
        adamnb.minimize(_quadratic, x0, jac=True, callback=lambda xk: None,
                        options={"compiled": True})
    with pytest.raises(ValueError, match="numba-jitted"):
        adamnb.minimize(lambda x: (float(x @ x), 2 * x), x0, jac=True,
                        options={"compiled": True})
    with pytest.raises(ValueError, match="Invalid compiled"):
        adamnb.minimize(_quadratic, x0, jac=True, options={"compiled": "yes"})
    forced = adamnb.minimize(_quadratic, x0, jac=True, options={"compiled": True, "maxiter": 5})
    host = adamnb.minimize(_quadratic, x0, jac=True, options={"compiled": False, "maxiter": 5})
    assert forced.x.tobytes() == host.x.tobytes()


def test_fast_mode_takes_the_compiled_loop_at_once_or_says_why_it_cannot():
    """fast=True exists in the compiled loop only: with compiled=None a new objective's first
    run is already the fast loop's (the expected-cost rule would have given the host loop's exact
    bits first and the fast loop's later, for the same call); a run that cannot be compiled, or
    compiled=False, raises rather than running exact arithmetic under a fast=True."""
    @numba.njit
    def fresh(x):
        a = x[1] - x[0] * x[0]
        b = 1.0 - x[0]
        return 100.0 * a * a + b * b, np.array([-400.0 * x[0] * a - 2.0 * b, 200.0 * a])

    x0 = np.array([-1.5, 2.0])
    options = {"maxiter": 300, "gtol": 0, "lr": 0.01, "fast": True}
    first = adamnb.minimize(fresh, x0, jac=True, options=options)
    again = adamnb.minimize(fresh, x0, jac=True, options=options)
    forced = adamnb.minimize(fresh, x0, jac=True, options={**options, "compiled": True})
    exact = adamnb.minimize(fresh, x0, jac=True, options={**options, "fast": False})
    assert first.x.tobytes() == again.x.tobytes() == forced.x.tobytes() != exact.x.tobytes()
    with pytest.raises(ValueError, match="fast=True.*numba-jitted"):
        adamnb.minimize(lambda x: (float(x @ x), 2 * x), x0, jac=True, options=options)
    with pytest.raises(ValueError, match="fast=True.*callback"):
        adamnb.minimize(fresh, x0, jac=True, callback=lambda xk: None, options=options)
    with pytest.raises(ValueError, match="fast=True.*compiled=False"):
        adamnb.minimize(fresh, x0, jac=True, options={**options, "compiled": False})


def test_a_short_run_does_not_wait_for_a_compile(monkeypatch):
    """compiled=None: a user's new jitted objective takes the host loop while the host steps cost
    less than a compile, and the compiled loop once they would cost more (counted over this
    process's runs with that objective: rent, then buy)."""
    @numba.njit
    def fresh(x):
        return float(x @ x), 2.0 * x

    routes = []
    original = _compiled.iterate_compiled
    monkeypatch.setattr(adamnb.optimize._minimize, "iterate_compiled",
                        lambda *args: routes.append("compiled") or original(*args))
    monkeypatch.setattr(_compiled, "COMPILE_SECONDS", 1.0)
    monkeypatch.setattr(_compiled, "HOST_STEP_SECONDS", 1e-4)  # a compile = 10,000 host steps
    options = {"maxiter": 4000, "gtol": 0}
    for expected in ([], [], ["compiled"]):  # 4000, 8000 host steps; then 12,000 > 10,000
        routes.clear()
        adamnb.minimize(fresh, np.ones(2), jac=True, options=options)
        assert routes == expected
