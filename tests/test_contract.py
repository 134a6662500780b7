"""One contract on every path (tests/contract_table.py): every rule's every hyperparameter at a
non-default value, through every host front end, equals the independent reference and changes the
result; and the faults that once broke the contract on some paths (NaN met, finite differences
outside the bounds, the user's code seeing the live iterate, a callable lr evaluated ahead of
time, scipy's details, the two loops disagreeing), each on every path where it can occur.

The device driver's column of the table runs in numba's CUDA simulator:
tests/test_cuda_contract.py.
"""

import functools
import warnings

import numba
import numpy as np
import pytest
import scipy.optimize
from scipy.optimize import OptimizeWarning, rosen, rosen_der
from scipy.optimize._numdiff import approx_derivative  # scipy's own estimate, the oracle

import adamnb
from adamnb.optim import RULES
from adamnb.optimize import _minimize
from tests import contract_table as table

HOST_FRONT_ENDS = {"class": table.run_class, "minimize-python": table.run_python,
                   "minimize-compiled": table.run_compiled, "minimize_batch": table.run_batch,
                   "scipy": table.run_scipy, "cli": table.run_cli}


def test_every_hyperparameter_of_every_rule_has_a_row():
    assert set(table.TABLE) == set(RULES), "a rule without rows in tests/contract_table.py"
    for name, rule in RULES.items():
        options = {hp.name for hp in rule.hyperparameters} - set(rule.fixed)
        assert set(table.TABLE[name]) == options, name


@functools.lru_cache(maxsize=None)
def _reference(method, options):
    return table.reference(method, dict(options))


#: Front ends that run without groups: the matrix rules (table.GROUPS) do not take them.
WITHOUT_GROUPS = {"minimize-compiled": "runs groups in the host loop",
                  "minimize_batch": "runs without groups"}


def _run(front_end, method, options, capsys):
    if method in table.GROUPS and front_end in WITHOUT_GROUPS:
        pytest.skip(f"{method} needs groups; {front_end} {WITHOUT_GROUPS[front_end]}")
    run = HOST_FRONT_ENDS[front_end]
    if front_end == "cli":
        return run(method, options, capsys)
    if front_end == "minimize-compiled":
        with pytest.MonkeyPatch.context() as patch:  # it must not fall back to the host loop
            patch.setattr(_minimize, "iterate", _fail_if_called)
            return run(method, options)
    return run(method, options)


def _fail_if_called(*args, **kwargs):
    raise AssertionError("the compiled path fell back to the host loop")


@pytest.mark.parametrize("front_end", list(HOST_FRONT_ENDS))
@pytest.mark.parametrize("method, option, options, base", table.ROWS, ids=table.ROW_IDS)
def test_every_option_reaches_the_rule_on_every_front_end(front_end, method, option, options,
                                                          base, capsys):
    expected = _reference(method, tuple(sorted(options.items())))
    without = _reference(method, tuple(sorted(base.items())))
    # The table's own guard: the option changes the reference's result.
    assert np.abs(expected - without).max() > table.MIN_CHANGE * np.abs(without).max()
    got = _run(front_end, method, options, capsys)
    if front_end == "minimize_batch":
        second = table.reference(method, options, x0=table.X0 + np.array([0.05, -0.05]))
        np.testing.assert_allclose(got[1], second, rtol=table.RTOL)
        got = got[0]
    np.testing.assert_allclose(got, expected, rtol=table.RTOL, err_msg=f"{front_end}: {option}")


# --- 1. every option reaches the rule: no name clash with the driver's options --------------------

def test_no_rule_takes_a_driver_options_name():
    for rule in RULES.values():
        clash = {hp.name for hp in rule.hyperparameters} & set(_minimize.DRIVER_OPTIONS)
        assert not clash, (rule.name, clash)
    text = adamnb.show_options("adam", disp=False)
    assert text.count("    eps = ") == 1 and "finite_diff_rel_step" in text


def test_a_clashing_rule_cannot_be_registered():
    from adamnb.optim._rule import Hyperparameter, UpdateRule
    adam = RULES["adam"]
    with pytest.raises(ValueError, match="belong to the drivers"):
        UpdateRule(**{**adam.__dict__, "hyperparameters": adam.hyperparameters + (
            Hyperparameter("maxiter", 1.0, "a clash"),)})


def test_eps_with_finite_differences_is_adams_eps():
    """Adam's eps with jac='2-point' changes Adam's steps (it once was the difference step)."""
    f = lambda x: float(np.sum(x ** 2))  # noqa: E731
    runs = {eps: adamnb.minimize(f, [1.0, -0.5], jac="2-point",
                                 options={"eps": eps, "lr": 0.1, "maxiter": 5, "gtol": 0})
            for eps in (1e-8, 1e-3)}
    assert runs[1e-8].x.tobytes() != runs[1e-3].x.tobytes()
    expected = table.reference_run("adam", np.array([1.0, -0.5]), lambda x, t: 2 * x, steps=5,
                                   lr=0.1, eps=1e-3)[-1]
    np.testing.assert_allclose(runs[1e-3].x, expected, rtol=1e-6)


def test_finite_diff_rel_step_is_scipys():
    x = np.array([0.3, -0.7, 1.9])
    for scheme in ("2-point", "3-point"):
        for rel_step in (None, 1e-4):
            res = adamnb.minimize(rosen, x, jac=scheme,
                                  options={"maxiter": 0, "finite_diff_rel_step": rel_step})
            expected = approx_derivative(rosen, x, method=scheme, rel_step=rel_step)
            np.testing.assert_array_equal(res.jac, expected)


# --- 2. NaN or inf anywhere in the gradient ends the run with status 3 ----------------------------

def _nan_below_one(x):
    g = 2.0 * x
    if x[0] < 1.0:
        g[0] = np.nan
    return g


_nan_below_one_jit = numba.njit(_nan_below_one)


@numba.njit
def _squares_jit(x):
    return float(np.sum(x * x))


@pytest.mark.parametrize("path", ["python", "compiled", "scipy"])
def test_the_issues_nan_case_is_status_3(path):
    """SGD from [1, 0], gradient NaN in its first element once x[0] < 1 (issue 10, item 2)."""
    x0 = np.array([1.0, 0.0])
    options = {"lr": 0.1, "maxiter": 50}
    if path == "compiled":
        # compiled=True: a 50-step run would take the host loop by default (rent-or-buy)
        res = adamnb.minimize(_squares_jit, x0, method="sgd", jac=_nan_below_one_jit,
                              options={**options, "compiled": True})
    elif path == "scipy":
        res = scipy.optimize.minimize(lambda x: float(x @ x), x0, method=adamnb.sgd,
                                      jac=_nan_below_one, options=options)
    else:
        res = adamnb.minimize(lambda x: float(x @ x), x0, method="sgd", jac=_nan_below_one,
                              options=options)
    assert res.status == 3 and not res.success
    assert res.x.tolist() == [1.0, 0.0] and res.jac.tolist() == [2.0, 0.0]
    assert np.isfinite(res.jac).all()


def _nan_at(position, n):
    """A quadratic whose gradient turns NaN (or inf) at ``position`` from step 4 on."""
    calls = {"count": 0}

    def fun_and_grad(x):
        calls["count"] += 1
        g = x - 1.0
        if calls["count"] > 4:
            g[position] = np.nan if position % 2 == 0 else np.inf
        return 0.5 * float(g @ g), g

    return fun_and_grad


@pytest.mark.parametrize("n, parallel", [(5, False), (70_000, False), (70_000, True)],
                         ids=["short", "long-serial", "long-threaded"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_nan_or_inf_anywhere_in_the_gradient_is_status_3(n, parallel, where):
    position = {"first": 0, "middle": n // 2, "last": n - 1}[where]
    fun = _nan_at(position, n)
    x0 = np.zeros(n)
    res = adamnb.minimize(fun, x0, method="adam", jac=True,
                          options={"lr": 0.1, "maxiter": 20, "parallel": parallel})
    assert res.status == 3 and res.nit == 3  # the accepted steps: x is after 3 of them
    expected = table.reference_run("adam", x0, lambda x, t: x - 1.0, steps=3, lr=0.1)[-1]
    np.testing.assert_array_equal(res.x, expected)
    np.testing.assert_array_equal(res.jac, expected - 1.0)  # the gradient at res.x


def test_nan_in_the_compiled_loop_anywhere_in_a_long_gradient():
    @numba.njit
    def fun(x):
        g = x - 1.0
        if x[0] > 0.25:
            g[x.size // 2] = np.nan
        return 0.5 * float(g @ g), g

    res = adamnb.minimize(fun, np.zeros(1001), method="sgd", jac=True,
                          options={"lr": 0.1, "maxiter": 10, "compiled": True})
    assert res.status == 3 and np.isfinite(res.jac).all() and res.x[0] <= 0.25
    np.testing.assert_array_equal(res.jac, res.x - 1.0)


def test_nan_in_a_batch_start_is_status_3_for_that_start_only():
    @numba.njit
    def fun(x):
        g = 2.0 * x
        if x[1] > 0.5 and x[0] < 0.9:
            g[0] = np.nan
        return float(x @ x), g

    starts = np.array([[1.0, 1.0], [1.0, 0.0]])
    res = adamnb.minimize_batch(fun, starts, method="sgd", options={"lr": 0.05, "maxiter": 30})
    assert res.status.tolist() == [3, 1]
    assert np.isfinite(res.jac).all() and res.x[0, 0] >= 0.9


def test_jac_reusing_one_buffer_cannot_change_the_result():
    """res.jac is the result's own array: the user's jac may overwrite its output buffer."""
    buffer = np.empty(2)

    def jac(x):
        buffer[:] = _nan_below_one(x)
        return buffer

    res = adamnb.minimize(lambda x: float(x @ x), [1.0, 0.0], method="sgd", jac=jac,
                          options={"lr": 0.1, "maxiter": 50})
    assert res.status == 3 and res.jac.tolist() == [2.0, 0.0]
    assert not np.shares_memory(res.jac, buffer)
    ok = adamnb.minimize(lambda x: float(x @ x), [3.0, 1.0], method="sgd", jac=jac,
                         options={"lr": 0.1, "maxiter": 3})
    assert not np.shares_memory(ok.jac, buffer)


def test_nan_in_the_objective_value_is_status_3():
    fun = lambda x: float("nan") if x[0] < 0.5 else float(x @ x)  # noqa: E731
    res = adamnb.minimize(fun, [1.0], method="sgd", jac=lambda x: 2 * x,
                          options={"lr": 0.2, "maxiter": 10})
    assert res.status == 3 and res.x[0] >= 0.5 and res.fun == res.x[0] ** 2


# --- 3. finite differences never leave the bounds -------------------------------------------------

@pytest.mark.parametrize("scheme", ["2-point", "3-point", None])
@pytest.mark.parametrize("bounds", [
    [(0, 0), (0, 1)],                       # a fixed variable (the issue's case)
    [(0.0, 1e-12), (-1, 1)],                # a box narrower than the step
    [(-1, 0.3), (0.3 - 1e-9, 0.3 + 1e-9)],  # at an upper bound; a tiny box around x
])
@pytest.mark.parametrize("via", ["adamnb", "scipy"])
def test_finite_differences_stay_inside_the_bounds(scheme, bounds, via):
    points = []

    def f(x):
        points.append(x.copy())
        return float((x[0] - 2.0) ** 2 + (x[1] + 1.0) ** 2)

    x0 = np.array([0.0, 0.3])
    options = {"maxiter": 5, "lr": 0.01}
    if via == "scipy":
        res = scipy.optimize.minimize(f, x0, method=adamnb.adam, jac=scheme, bounds=bounds,
                                      options=options)
    else:
        res = adamnb.minimize(f, x0, jac=scheme, bounds=bounds, options=options)
    lower, upper = np.array(bounds, dtype=float).T
    points = np.array(points)
    assert (points >= lower).all() and (points <= upper).all()
    assert np.isfinite(res.jac).all() and res.nit == 5


def test_finite_differences_at_a_bound_match_scipys_estimate():
    x = np.array([0.3, 1.0 - 1e-10])
    bounds = ([-1.0, 0.0], [0.3, 1.0])
    res = adamnb.minimize(rosen, x, jac="3-point", bounds=list(zip(*bounds)),
                          options={"maxiter": 0})
    expected = approx_derivative(rosen, x, method="3-point", bounds=bounds)
    np.testing.assert_array_equal(res.jac, expected)


def test_a_fixed_variable_has_derivative_zero_and_the_run_can_converge():
    f = lambda x: float((x[0] - 3.0) ** 2 + (x[1] - 0.5) ** 2)  # noqa: E731
    res = adamnb.minimize(f, [0.0, 0.3], jac="2-point", bounds=[(0, 0), (0, 1)],
                          options={"lr": 0.05, "maxiter": 2000, "gtol": 1e-6})
    assert res.status == 0 and res.x[0] == 0.0 and abs(res.x[1] - 0.5) < 1e-5
    assert res.jac[0] == 0.0


def test_gtol_with_bounds_is_the_projected_gradients_norm():
    """At a bound the gradient pushes against, the projected gradient is zero (L-BFGS-B's pgtol):
    the run converges there, as scipy's L-BFGS-B does."""
    f = lambda x: float((x[0] - 3.0) ** 2 + x[1] ** 2)  # noqa: E731
    grad = lambda x: np.array([2 * (x[0] - 3.0), 2 * x[1]])  # noqa: E731
    for method in ("adam", adamnb.adam):
        res = adamnb.minimize(f, [0.0, 0.5], method=method, jac=grad, bounds=[(-1, 1), (-1, 1)],
                              options={"lr": 0.05, "maxiter": 5000, "gtol": 1e-6})
        lbfgsb = scipy.optimize.minimize(f, [0.0, 0.5], jac=grad, bounds=[(-1, 1), (-1, 1)],
                                         method="L-BFGS-B")
        assert res.status == 0 and lbfgsb.success
        np.testing.assert_allclose(res.x, lbfgsb.x, atol=1e-6)
        assert res.jac[0] == pytest.approx(-4.0)  # the true gradient, not the projected one


# --- 4. the user's code gets the point as its own array --------------------------------------------

@pytest.mark.parametrize("jac", ["callable", True, "2-point"])
@pytest.mark.parametrize("via", ["adamnb", "scipy"])
def test_fun_gets_its_own_array_each_call(jac, via):
    seen = []

    def fun(x):
        seen.append(x)
        value, g = float(np.sum((x - 1.0) ** 2)), 2.0 * (x - 1.0)
        x[0] = 1e6  # a careless objective: the run must not notice
        return (value, g) if jac is True else value

    def gradient(x):
        g = 2.0 * (x - 1.0)
        x[:] = -7.0
        return g

    kwargs = {"jac": {"callable": gradient, True: True, "2-point": "2-point"}[jac],
              "options": {"lr": 0.1, "maxiter": 5, "gtol": 0}}
    x0 = np.array([0.0, 3.0])
    clean = adamnb.minimize(lambda x: float(np.sum((x - 1.0) ** 2)), x0,
                            jac=lambda x: 2.0 * (x - 1.0), options=kwargs["options"])
    if via == "scipy":
        res = scipy.optimize.minimize(fun, x0, method=adamnb.adam, **kwargs)
    else:
        res = adamnb.minimize(fun, x0, **kwargs)
    if jac != "2-point":
        np.testing.assert_array_equal(res.x, clean.x)
    else:
        np.testing.assert_allclose(res.x, clean.x, rtol=1e-6)
    assert len({id(x) for x in seen}) == len(seen)  # a new array at every call
    assert x0.tolist() == [0.0, 3.0]


def test_a_jitted_objective_that_writes_into_x_cannot_change_the_compiled_run():
    @numba.njit
    def careless(x):
        g = 2.0 * (x - 1.0)
        value = float(np.sum((x - 1.0) ** 2))
        x[0] = 1e6
        return value, g

    @numba.njit
    def careful(x):
        return float(np.sum((x - 1.0) ** 2)), 2.0 * (x - 1.0)

    options = {"lr": 0.1, "maxiter": 30, "gtol": 0}
    a = adamnb.minimize(careless, [0.0, 3.0], jac=True, options={**options, "compiled": True})
    b = adamnb.minimize(careful, [0.0, 3.0], jac=True, options=options)
    np.testing.assert_array_equal(a.x, b.x)
    batch = adamnb.minimize_batch(careless, np.array([[0.0, 3.0]]), options=options)
    np.testing.assert_array_equal(batch.x[0], b.x)


# --- 5. a callable lr is called once per step, at that step ---------------------------------------

class RecordingSchedule:
    """lr(t) that logs its calls and reads a value a callback can change."""

    def __init__(self):
        self.calls, self.scale = [], 1.0

    def __call__(self, t):
        self.calls.append(t)
        return 0.01 * self.scale


@pytest.mark.parametrize("front_end", ["python", "compiled", "scipy", "batch", "class"])
def test_a_callable_lr_is_called_once_per_step_in_order(front_end):
    schedule = RecordingSchedule()
    rosenbrock = adamnb.functions.get("rosenbrock")
    options = {"lr": schedule, "maxiter": 7, "gtol": 0}
    if front_end == "python":
        adamnb.minimize(rosen, table.X0, jac=rosen_der, options=options)
    elif front_end == "compiled":
        adamnb.minimize(rosenbrock.value_and_grad, table.X0, jac=True, options=options)
    elif front_end == "scipy":
        scipy.optimize.minimize(rosen, table.X0, method=adamnb.adam, jac=rosen_der,
                                options=options)
    elif front_end == "batch":
        adamnb.minimize_batch(rosenbrock.value_and_grad, np.stack([table.X0] * 3),
                              options=options)
    else:
        optimizer, x = adamnb.Adam(lr=schedule), table.X0.copy()
        for _ in range(7):
            optimizer.step(x, rosen_der(x))
    assert schedule.calls == [1, 2, 3, 4, 5, 6, 7]


def test_a_schedule_sees_what_the_callback_changed():
    schedule = RecordingSchedule()

    def callback(xk):
        schedule.scale = 0.0  # from step 2 on, no step at all

    res = adamnb.minimize(rosen, table.X0, method="sgd", jac=rosen_der, callback=callback,
                          options={"lr": schedule, "maxiter": 5, "gtol": 0})
    one_step = table.X0 - 0.01 * rosen_der(table.X0)
    np.testing.assert_array_equal(res.x, one_step)
    assert schedule.calls == [1, 2, 3, 4, 5]


def test_a_run_that_stops_early_calls_lr_for_no_step_beyond():
    schedule = RecordingSchedule()

    def callback(xk):
        if len(schedule.calls) == 3:
            raise StopIteration

    res = adamnb.minimize(rosen, table.X0, jac=rosen_der, callback=callback,
                          options={"lr": schedule, "maxiter": 1000})
    assert res.status == 99 and schedule.calls == [1, 2, 3]


# --- 6. scipy's details ---------------------------------------------------------------------------

def test_jac_false_means_finite_differences_as_in_scipy():
    a = adamnb.minimize(rosen, table.X0, jac=False, options={"maxiter": 3})
    b = adamnb.minimize(rosen, table.X0, jac="2-point", options={"maxiter": 3})
    assert a.x.tobytes() == b.x.tobytes() and a.njev == b.njev == 4


def test_an_objective_returning_any_size_one_array_is_accepted():
    res = adamnb.minimize(lambda x: np.array([[float(x @ x)]]), [1.0, 2.0],
                          jac=lambda x: 2 * x, options={"maxiter": 3})
    assert isinstance(res.fun, float) and res.nit == 3


def test_maxiter_may_be_a_whole_float():
    res = adamnb.minimize(rosen, table.X0, jac=rosen_der, options={"maxiter": 1e1, "gtol": 0})
    assert res.nit == 10
    with pytest.raises(ValueError, match="Invalid maxiter: 2.5"):
        adamnb.minimize(rosen, table.X0, jac=rosen_der, options={"maxiter": 2.5})


def test_zero_d_arrays_and_tensors_are_hyperparameters():
    zero_d = adamnb.Adam(lr=np.array(1e-3), beta1=np.float32(0.8))
    assert zero_d.options["lr"] == 1e-3 and isinstance(zero_d.options["beta1"], float)
    res = adamnb.minimize(rosen, table.X0, jac=rosen_der,
                          options={"lr": np.array(0.01), "maxiter": 2})
    assert res.nit == 2
    torch = pytest.importorskip("torch")
    assert adamnb.Adam(lr=torch.tensor(1e-3)).options["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="Invalid lr"):
        adamnb.Adam(lr=np.array([1e-3, 1e-4]))


def test_a_custom_method_gets_tol_as_scipy_passes_it():
    seen = {}

    def method(fun, x0, args=(), **options):
        seen.update(options)
        return scipy.optimize.OptimizeResult(x=x0, fun=fun(x0), success=True)

    adamnb.minimize(rosen, table.X0, method=method, tol=1e-3)
    assert seen.get("tol") == 1e-3 and "gtol" not in seen
    scipy_seen = dict(seen)
    seen.clear()
    scipy.optimize.minimize(rosen, table.X0, method=method, tol=1e-3)
    assert seen == scipy_seen
    # and adamnb's own callables take tol as gtol
    res = scipy.optimize.minimize(rosen, table.X0, method=adamnb.adam, jac=rosen_der, tol=1e9)
    assert res.status == 0 and res.nit == 0


def test_show_options_has_scipys_signature():
    text = adamnb.show_options(solver="minimize", method="adam", disp=False)
    assert text == adamnb.show_options("minimize", "adam", disp=False)
    assert text == adamnb.show_options("adam", disp=False)
    assert "method 'sgd'" in adamnb.show_options(solver="minimize", disp=False)
    with pytest.raises(ValueError, match="Unknown solver"):
        adamnb.show_options(solver="root", method="adam")


def test_njev_counts_each_finite_difference_estimate():
    res = adamnb.minimize(rosen, table.X0, jac="2-point", options={"maxiter": 4, "gtol": 0})
    assert res.njev == 5 and res.nfev == 5 * 3
    res = adamnb.minimize(rosen, table.X0, jac="3-point", options={"maxiter": 4, "gtol": 0})
    assert res.njev == 5 and res.nfev == 5 * 5


def test_scipy_wrapped_minibatches_are_unwrapped():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5])

    def loss(w, Xb, yb):
        return 0.5 * float(np.mean((Xb @ w - yb) ** 2))

    def grad(w, Xb, yb):
        return Xb.T @ (Xb @ w - yb) / len(yb)

    options = {"lr": 0.05, "maxiter": 40}
    via_scipy = scipy.optimize.minimize(loss, np.zeros(3), method=adamnb.adam, jac=grad,
                                        args=adamnb.minibatches(X, y, 16, seed=1),
                                        options=options)
    direct = adamnb.minimize(loss, np.zeros(3), jac=grad,
                             args=adamnb.minibatches(X, y, 16, seed=1), options=options)
    assert via_scipy.x.tobytes() == direct.x.tobytes() and via_scipy.nit == 40


# --- 7. the compiled loop and the host loop agree, return_all included -----------------------------

@numba.njit
def _gradient_only_blows_up(x):
    g = 2.0 * x
    if x[0] < 0.2:
        g[1] = np.inf
    return float(x @ x), g


@pytest.mark.parametrize("bounds", [None, [(-2, 2), (-2, 2)]])
def test_return_all_is_the_same_on_both_loops_when_only_the_gradient_blows_up(bounds):
    options = {"lr": 0.1, "maxiter": 50, "return_all": True}
    fast = adamnb.minimize(_gradient_only_blows_up, [1.0, 1.0], method="sgd", jac=True,
                           bounds=bounds, options={**options, "compiled": True})
    slow = adamnb.minimize(lambda x: _gradient_only_blows_up(x), [1.0, 1.0], method="sgd",
                           jac=True, bounds=bounds, options=options)
    assert fast.status == slow.status == 3 and fast.nit == slow.nit
    assert len(fast.allvecs) == len(slow.allvecs) == fast.nit + 1  # x0 and the accepted steps
    for a, b in zip(fast.allvecs, slow.allvecs):
        assert a.tobytes() == b.tobytes()
    assert fast.allvecs[-1].tobytes() == fast.x.tobytes()
    assert np.array_equal(fast.fun_history, slow.fun_history)


def test_no_warning_for_valid_calls_on_any_path():
    rosenbrock = adamnb.functions.get("rosenbrock")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for options in table.TABLE["adam"].values():
            options = options[0] if isinstance(options, tuple) else options
            adamnb.minimize(rosenbrock.value_and_grad, table.X0, jac=True,
                            options=table.minimize_options(options))
    with pytest.warns(OptimizeWarning, match="Unknown solver option: epsilon"):
        adamnb.minimize(rosen, table.X0, jac=rosen_der, options={"epsilon": 1e-3})


# --- status 3: nit counts the accepted steps (review item S3) -----------------------------------

@numba.njit
def _climbing(x):
    """-(x @ x), -inf once |x_0| > 2: minimizing it climbs away from 0 and meets -inf."""
    return (-float(x @ x) if abs(x[0]) <= 2.0 else -np.inf), -2.0 * x


@pytest.mark.parametrize("method", ["sgd", "adam", "lamb", "schedule_free_adamw"])
@pytest.mark.parametrize("front_end", ["python", "compiled", "batch"])
def test_status_3_nit_is_the_number_of_steps_that_made_x(front_end, method):
    """res.x after status 3 is the iterate after res.nit steps: a run of maxiter=res.nit steps
    ends (status 1) on the same bits; the rejected step counts in nfev, not in nit. For
    schedule-free AdamW res.x is then the last finite iterate y (its state holds the rejected
    step, so no evaluation point is made from it)."""
    x0 = np.array([1.0, 0.5])

    def run(maxiter):
        options = {"lr": 0.05, "maxiter": maxiter}
        if front_end == "batch":
            batch = adamnb.minimize_batch(_climbing, np.stack([x0, x0]), method=method,
                                          options=options)
            return {name: (value[0] if np.ndim(value) else value)
                    for name, value in batch.items()}
        return adamnb.minimize(_climbing, x0, method=method, jac=True,
                               options={**options, "compiled": front_end == "compiled"})

    res = run(200)
    assert res["status"] == 3 and 0 < res["nit"] < 200
    assert res["nfev"] == res["nit"] + 2  # x0, the accepted steps, the rejected one
    assert res["fun"] == _climbing(res["x"])[0]
    short = run(int(res["nit"]))
    assert (short["status"], short["nit"]) == (1, res["nit"])
    if method == "schedule_free_adamw":
        assert res["x"].tobytes() == res["y"].tobytes() == short["y"].tobytes()
    else:
        assert res["x"].tobytes() == short["x"].tobytes()
