"""minimize's scipy contract, point by point, with scipy.optimize as the reference."""

import warnings

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning, rosen, rosen_der

import adamnb
from adamnb.optim.optimizers import OPTIMIZERS
from adamnb.optim.rules import VECTOR_RULES
from adamnb.problems.functions import rosenbrock_value_and_grad

ROSEN_START = np.array([-1.2, 1.0])
#: The methods that update the whole vector; Muon updates matrices (tests/test_groups.py).
VECTOR_METHODS = list(VECTOR_RULES)


def quadratic(x, a=1.0):
    return a * float(np.sum((x - 3.0) ** 2))


def quadratic_grad(x, a=1.0):
    return 2.0 * a * (x - 3.0)


def test_returns_scipy_optimize_result_with_every_field():
    res = adamnb.minimize(so.rosen, ROSEN_START, method="adam", jac=so.rosen_der,
                          options={"lr": 0.02, "maxiter": 6000})
    assert isinstance(res, OptimizeResult)
    for field in ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success", "message"):
        assert field in res
    assert res.status == 0 and res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)
    assert res.fun == pytest.approx(so.rosen(res.x))
    np.testing.assert_allclose(res.jac, so.rosen_der(res.x))
    assert np.abs(res.jac).max() <= 1e-5
    assert res.nfev == res.njev == res.nit + 1


@pytest.mark.parametrize("method", VECTOR_METHODS)
def test_every_method_minimizes_a_quadratic(method):
    lr = {"sgd": 0.1, "adadelta": 1.0, "adagrad": 0.5}.get(method, 0.05)
    # ASGD's lambd shrinks x at every step (a fixed point off the minimum): off here. NovoGrad's
    # step is normalised by the gradient's norm, so at a constant rate it circles the minimum at
    # a distance set by the rate (2.986 here, the gradient 0.03): a decaying rate, as its paper
    # trains with.
    extra = {"asgd": {"lambd": 0.0},
             "novograd": {"lr": adamnb.optim.schedules.Exponential(lr, 0.999)}}.get(method, {})
    res = adamnb.minimize(quadratic, np.zeros(4), method=method, jac=quadratic_grad,
                          options={"lr": lr, "maxiter": 20000, "gtol": 1e-4, **extra})
    assert res.success, res.message
    # gtol holds where the gradient was taken: schedule-free's y (its x, the average, lags).
    np.testing.assert_allclose(res.get("y", res.x), 3.0, atol=1e-3)


def test_method_names_are_case_insensitive_and_unknown_ones_list_the_valid():
    a = adamnb.minimize(quadratic, [0.0], method="AdaM", jac=quadratic_grad)
    b = adamnb.minimize(quadratic, [0.0], method="adam", jac=quadratic_grad)
    assert a.x.tobytes() == b.x.tobytes()
    with pytest.raises(ValueError, match="Unknown method 'bfgs'.*adam.*radam"):
        adamnb.minimize(quadratic, [0.0], method="bfgs")


def test_method_callable_is_called_as_scipy_calls_custom_methods():
    seen = {}

    def custom(fun, x0, args, jac, hess, hessp, bounds, constraints, callback, **options):
        seen.update(options=options, args=args)
        return OptimizeResult(x=x0, fun=fun(x0, *args), success=True)

    res = adamnb.minimize(quadratic, [1.0], args=(2.0,), method=custom, options={"foo": 1})
    assert res.fun == 8.0 and seen == {"options": {"foo": 1}, "args": (2.0,)}


@pytest.mark.parametrize("method", adamnb.METHODS)
def test_method_callables_work_inside_scipy_minimize(method):
    callable_method = getattr(adamnb, method)
    options = {"lr": 0.01, "maxiter": 50}
    if method == "muon":
        options["groups"] = [{"params": (0, 2, (1, 2))}]
    ours = adamnb.minimize(quadratic, [0.0, 1.0], method=method, jac=quadratic_grad,
                           options=options)
    theirs = so.minimize(quadratic, [0.0, 1.0], method=callable_method, jac=quadratic_grad,
                         options=options)
    assert theirs.x.tobytes() == ours.x.tobytes()
    assert theirs.nit == ours.nit == 50


def test_scipy_custom_method_gets_tol_jac_true_and_callback():
    calls = []
    res = so.minimize(lambda x: (quadratic(x), quadratic_grad(x)), [0.0], method=adamnb.adam,
                      jac=True, tol=1e-3, callback=lambda xk: calls.append(xk.copy()),
                      options={"lr": 0.1, "maxiter": 5000})
    assert res.success and np.abs(res.jac).max() <= 1e-3
    assert len(calls) == res.nit


class TestJac:
    def test_callable_and_args_reach_both(self):
        seen = []

        def fun(x, a, b):
            seen.append(("fun", a, b))
            return quadratic(x, a)

        def jac(x, a, b):
            seen.append(("jac", a, b))
            return quadratic_grad(x, a)

        adamnb.minimize(fun, [0.0], args=(2.0, "b"), jac=jac, options={"maxiter": 3})
        assert set(seen) == {("fun", 2.0, "b"), ("jac", 2.0, "b")}

    def test_jac_true(self):
        res = adamnb.minimize(lambda x: (so.rosen(x), so.rosen_der(x)), ROSEN_START, jac=True,
                              options={"lr": 0.02, "maxiter": 100})
        ref = adamnb.minimize(so.rosen, ROSEN_START, jac=so.rosen_der,
                              options={"lr": 0.02, "maxiter": 100})
        assert res.x.tobytes() == ref.x.tobytes()
        assert res.nfev == res.njev == 101

    @pytest.mark.parametrize("scheme, tolerance", [("2-point", 1e-6), ("3-point", 1e-9),
                                                   (None, 1e-6)])
    def test_finite_differences_match_the_analytic_gradient(self, scheme, tolerance):
        x = np.array([0.3, -0.7, 1.9])
        res = adamnb.minimize(so.rosen, x, jac=scheme, options={"maxiter": 0})
        np.testing.assert_allclose(res.jac, so.rosen_der(x), rtol=tolerance * 100,
                                   atol=tolerance * 1000)
        # scipy counts each difference estimate as a gradient evaluation, its points as nfev.
        assert res.njev == 1 and res.nfev == 1 + (3 if scheme != "3-point" else 6)

    def test_finite_differences_stay_inside_bounds(self):
        seen = []

        def fun(x):
            seen.append(x.copy())
            return float(np.sum(x ** 2))

        adamnb.minimize(fun, [1.0, 0.0], jac="3-point", bounds=[(None, 1.0), (0.0, None)],
                        options={"maxiter": 0})
        points = np.array(seen)
        assert (points[:, 0] <= 1.0).all() and (points[:, 1] >= 0.0).all()

    def test_bad_jac_is_an_error(self):
        with pytest.raises(ValueError, match="jac must be"):
            adamnb.minimize(quadratic, [0.0], jac="cs")


class TestBounds:
    def test_bounds_are_enforced_at_every_step_and_x0_projected(self):
        path = []
        res = adamnb.minimize(quadratic, [10.0, -10.0], jac=quadratic_grad,
                              bounds=[(None, 2.0), (-1.0, 5.0)], callback=path.append,
                              options={"lr": 0.5, "maxiter": 300})
        path = np.array(path)
        assert (path[:, 0] <= 2.0).all() and (path[:, 1] >= -1.0).all() and (path[:, 1] <= 5).all()
        np.testing.assert_allclose(res.x, [2.0, 3.0], atol=1e-3)

    def test_bounds_object_equals_pairs(self):
        a = adamnb.minimize(quadratic, [0.0, 0.0], jac=quadratic_grad,
                            bounds=Bounds([-1, -1], [1, 2]), options={"lr": 0.1, "maxiter": 50})
        b = adamnb.minimize(quadratic, [0.0, 0.0], jac=quadratic_grad,
                            bounds=[(-1, 1), (-1, 2)], options={"lr": 0.1, "maxiter": 50})
        assert a.x.tobytes() == b.x.tobytes()
        np.testing.assert_allclose(a.x, [1.0, 2.0], atol=1e-6)

    def test_projection_agrees_with_l_bfgs_b(self):
        bounds = [(0.5, 2.0), (-3.0, 0.2)]
        ours = adamnb.minimize(so.rosen, [1.0, 0.0], jac=so.rosen_der, bounds=bounds,
                               options={"lr": 0.01, "maxiter": 20000, "gtol": 0})
        theirs = so.minimize(so.rosen, [1.0, 0.0], jac=so.rosen_der, bounds=bounds,
                             method="L-BFGS-B")
        np.testing.assert_allclose(ours.x, theirs.x, atol=1e-4)

    @pytest.mark.parametrize("bounds, message", [
        ([(2.0, 1.0), (None, None)], "lower bound 2.0 > upper bound 1.0 at index 0"),
        ([(0.0, 1.0)], "1 \\(min, max\\) pair\\(s\\) but x0 has 2"),
        (Bounds([0, 0, 0], [1, 1, 1]), "length 2"),
        ([(0, 1, 2), (0, 1)], "pairs"),
        ([(np.nan, 1), (0, 1)], "NaN"),
    ])
    def test_bad_bounds(self, bounds, message):
        with pytest.raises(ValueError, match=message):
            adamnb.minimize(quadratic, [0.0, 0.0], bounds=bounds)


class TestCallback:
    def test_xk_style_gets_a_copy_each_step(self):
        seen = []
        res = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                              callback=lambda xk: seen.append(xk),
                              options={"lr": 0.1, "maxiter": 10, "gtol": 0})
        assert len(seen) == 10 and len({id(a) for a in seen}) == 10
        assert seen[-1].tobytes() == res.x.tobytes() and seen[0][0] != seen[-1][0]

    def test_intermediate_result_style(self):
        seen = []

        def callback(intermediate_result):
            seen.append(intermediate_result)

        adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, callback=callback,
                        options={"maxiter": 5, "gtol": 0})
        assert all(isinstance(r, OptimizeResult) for r in seen) and len(seen) == 5
        assert seen[-1].fun == pytest.approx(quadratic(seen[-1].x))

    def test_stop_iteration_ends_with_status_99(self):
        def callback(intermediate_result):
            if intermediate_result.fun < 5.0:
                raise StopIteration

        res = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, callback=callback,
                              options={"lr": 0.1, "maxiter": 1000})
        assert res.status == 99 and not res.success and res.fun < 5.0
        assert res.message == "`callback` raised `StopIteration`."
        assert 0 < res.nit < 1000


class TestOptionsAndStatus:
    def test_maxiter_counts_update_steps_and_reports_status_1(self):
        res = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, options={"maxiter": 7})
        assert res.nit == 7 and res.status == 1 and res.success is False
        assert res.message == "Maximum number of iterations has been exceeded."

    def test_gtol_and_tol(self):
        res = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, tol=1e-2,
                              options={"lr": 0.1, "maxiter": 10000})
        assert res.status == 0 and np.abs(res.jac).max() <= 1e-2
        previous = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                                   options={"lr": 0.1, "maxiter": res.nit - 1, "gtol": 1e-2})
        assert np.abs(previous.jac).max() > 1e-2  # it stopped at the first step that met gtol
        disabled = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                                   options={"lr": 0.1, "maxiter": 300, "gtol": 0})
        assert disabled.nit == 300 and disabled.status == 1

    def test_unknown_option_warns_naming_it(self):
        with pytest.warns(OptimizeWarning, match="Unknown solver option: betas"):
            adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                            options={"betas": (0.9, 0.99), "maxiter": 1})

    def test_hyperparameters_reach_the_rule(self):
        res = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                              options={"lr": 0.5, "beta1": 0.5, "maxiter": 1})
        # Adam's first step is lr * sign(g) (up to eps): the lr was used.
        assert res.x[0] == pytest.approx(0.5, rel=1e-6)

    def test_hess_and_constraints_warn_as_scipy(self):
        with pytest.warns(RuntimeWarning, match="does not use Hessian information"):
            adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, hess=lambda x: np.eye(1),
                            options={"maxiter": 1})
        with pytest.warns(RuntimeWarning, match="cannot handle constraints"):
            adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                            constraints={"type": "eq", "fun": lambda x: x[0]},
                            options={"maxiter": 1})

    def test_nan_is_reported_with_status_3_and_the_last_finite_iterate(self):
        def fun(x):
            return np.nan if x[0] > 2.0 else quadratic(x)

        path = []
        res = adamnb.minimize(fun, [0.0], jac=quadratic_grad, callback=path.append,
                              options={"lr": 0.5, "maxiter": 100})
        assert res.status == 3 and not res.success and "NaN" in res.message
        assert np.isfinite(res.fun) and res.x[0] <= 2.0
        assert res.x.tobytes() == path[-1].tobytes()

    def test_inf_gradient_is_reported(self):
        res = adamnb.minimize(quadratic, [0.0], jac=lambda x: np.array([np.inf]),
                              options={"maxiter": 10})
        assert res.status == 3 and res.nit == 0 and res.x[0] == 0.0

    def test_disp_prints(self, capsys):
        adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, options={"maxiter": 3,
                                                                       "disp": True})
        out = capsys.readouterr().out
        assert "Iterations: 3" in out and "Function evaluations: 4" in out

    def test_return_all(self):
        res = adamnb.minimize(quadratic, [0.0], jac=quadratic_grad,
                              options={"maxiter": 5, "return_all": True, "gtol": 0})
        assert len(res.allvecs) == 6 and res.allvecs[0][0] == 0.0
        assert res.allvecs[-1].tobytes() == res.x.tobytes()
        np.testing.assert_allclose(res.fun_history, [quadratic(v) for v in res.allvecs])

    @pytest.mark.parametrize("options, message", [
        ({"maxiter": -1}, "maxiter"), ({"maxiter": 2.5}, "maxiter"), ({"gtol": -1.0}, "gtol"),
        ({"lr": -0.1}, "Invalid lr: -0.1"), ({"lr": float("nan")}, "Invalid lr"),
        ({"beta1": 1.0}, "Invalid beta1: 1.0; expected 0 <= beta1 < 1"),
        ({"beta2": -0.1}, "beta2"), ({"eps": -1e-8}, "Invalid eps"),
        ({"weight_decay": -1}, "weight_decay"), ({"amsgrad": "yes"}, "amsgrad"),
    ])
    def test_invalid_options_are_value_errors_naming_them(self, options, message):
        with pytest.raises(ValueError, match=message):
            adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, options=options)


def test_show_options():
    text = adamnb.show_options("Adam", disp=False)
    assert "beta1 = 0.9" in text and "amsgrad = False" in text and "maxiter" in text
    everything = adamnb.show_options(disp=False)
    assert all(f"method {name!r}" in everything for name in adamnb.METHODS)
    assert adamnb.show_options("sgd") is None
    with pytest.raises(ValueError, match="valid methods"):
        adamnb.show_options("lbfgs")


class TestBadInput:
    @pytest.mark.parametrize("x0, message", [
        ([np.nan, 1.0], "finite; x0\\[0\\] = nan"), ([1.0, np.inf], "finite"),
        ([], "empty"), (np.zeros((2, 2)), "one dimension"), (["a"], "real numbers"),
        ([1 + 2j], "real numbers"),
    ])
    def test_bad_x0(self, x0, message):
        with pytest.raises(ValueError, match=message):
            adamnb.minimize(quadratic, x0, jac=quadratic_grad)

    def test_non_scalar_objective(self):
        with pytest.raises(ValueError, match="must return a scalar value"):
            adamnb.minimize(lambda x: x ** 2, [1.0, 2.0], jac=lambda x: 2 * x)

    def test_gradient_of_the_wrong_shape(self):
        with pytest.raises(ValueError, match=r"gradient has shape \(3,\) but x has shape \(2,\)"):
            adamnb.minimize(quadratic, [1.0, 2.0], jac=lambda x: np.ones(3))

    def test_jac_true_without_a_tuple(self):
        with pytest.raises(ValueError, match="tuple"):
            adamnb.minimize(quadratic, [1.0], jac=True)

    def test_x0_is_never_modified(self):
        for x0 in (np.array([1.0, 2.0]), np.array([1.0, 2.0], np.float32)):
            before = x0.copy()
            res = adamnb.minimize(quadratic, x0, jac=quadratic_grad, bounds=[(0, 1.5)] * 2,
                                  options={"maxiter": 20})
            assert x0.tobytes() == before.tobytes() and res.x is not x0

    def test_dtypes_float32_in_float32_out_integers_become_float64(self):
        res32 = adamnb.minimize(quadratic, np.zeros(2, np.float32), jac=quadratic_grad,
                                options={"maxiter": 5})
        assert res32.x.dtype == np.float32 and res32.jac.dtype == np.float32
        res_int = adamnb.minimize(quadratic, [0, 1], jac=quadratic_grad, options={"maxiter": 5})
        assert res_int.x.dtype == np.float64


class TestStochastic:
    def setup_method(self):
        rng = np.random.default_rng(0)
        self.X = rng.normal(size=(200, 3))
        self.w = np.array([1.0, -2.0, 0.5])
        self.y = self.X @ self.w + 0.01 * rng.normal(size=200)

    @staticmethod
    def loss(w, X, y):
        return 0.5 * float(np.mean((X @ w - y) ** 2))

    @staticmethod
    def grad(w, X, y):
        return X.T @ (X @ w - y) / len(y)

    def run(self, seed, maxiter=600):
        batches = adamnb.minibatches(self.X, self.y, 20, seed=seed)
        res = adamnb.minimize(self.loss, np.zeros(3), args=batches, jac=self.grad,
                              options={"lr": 0.05, "maxiter": maxiter})
        return res, batches

    def test_minibatch_iterator_drives_the_run(self):
        res, batches = self.run(seed=1)
        np.testing.assert_allclose(res.x, self.w, atol=0.02)
        assert res.nit == 600 and res.status == 1  # gtol defaults to 0 for minibatches
        assert batches.step == 601 and batches.epoch == 60

    def test_same_seed_same_bits_other_seed_other_path(self):
        a, _ = self.run(seed=7, maxiter=50)
        b, _ = self.run(seed=7, maxiter=50)
        c, _ = self.run(seed=8, maxiter=50)
        assert a.x.tobytes() == b.x.tobytes() != c.x.tobytes()

    def test_each_step_sees_its_own_batch(self):
        seen = []

        def fun(w, X, y):
            seen.append(id(X))
            return self.loss(w, X, y)

        batches = adamnb.minibatches(self.X, self.y, 50, seed=0)
        adamnb.minimize(fun, np.zeros(3), args=batches, jac=self.grad, options={"maxiter": 4})
        assert len(seen) == 5

    def test_a_finite_iterator_that_runs_out_is_a_clear_error(self):
        batches = iter([(self.X, self.y)] * 3)
        with pytest.raises(ValueError, match="exhausted"):
            adamnb.minimize(self.loss, np.zeros(3), args=batches, jac=self.grad,
                            options={"maxiter": 10})


def test_optimizer_classes_match_minimize():
    """The stateful class and the driver share one rule: same steps, same bits."""
    scales = np.array([1.0, 10.0, 0.1])

    def fun(x):
        return 0.5 * float(np.sum(scales * (x - 1.0) ** 2))

    def jac(x):
        return scales * (x - 1.0)

    for method, cls in OPTIMIZERS.items():
        x = np.array([0.5, -1.0, 2.0])
        groups = [{"params": (0, 3, (3, 1))}] if method == "muon" else None
        opt = cls(lr=0.01, groups=groups)
        for _ in range(25):
            opt.step(x, jac(x))
        res = adamnb.minimize(fun, [0.5, -1.0, 2.0], method=method, jac=jac,
                              options={"lr": 0.01, "maxiter": 25, "gtol": 0, "groups": groups})
        assert res.status == 1
        # res.x is the rule's reported point (schedule-free: the average, outputs()["x"]).
        assert res.x.tobytes() == opt.outputs(x).get("x", x).tobytes(), method


def test_warnings_are_not_raised_for_valid_calls():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adamnb.minimize(quadratic, [0.0], jac=quadratic_grad, tol=1e-3,
                        options={"lr": 0.1, "maxiter": 10, "disp": False})


def test_option_warnings_point_at_the_callers_line():
    # minimize warns, as scipy's methods do; minimize_batch refuses (test_batch.py)
    with pytest.warns(OptimizeWarning, match="bogus") as caught:
        adamnb.minimize(rosenbrock_value_and_grad, [1.0, 2.0], jac=True,
                        options={"maxiter": 1, "bogus": 1})
    assert caught[0].filename == __file__


# --- bad input named in the error (review items S5, U1, U7, U8) ----------------------------------

def _square(x, *args):
    return float(x @ x)


def _square_grad(x, *args):
    return 2.0 * x


@pytest.mark.parametrize("item", [1.0, np.ones(3)], ids=["number", "array"])
def test_an_args_stream_item_that_is_not_a_tuple_is_named(item):
    stream = iter([item] * 5)
    with pytest.raises(TypeError, match="each element of the args iterator must be a tuple"):
        adamnb.minimize(_square, np.ones(2), args=stream, jac=_square_grad,
                        options={"maxiter": 3})


def test_a_list_item_of_an_args_stream_still_works():
    res = adamnb.minimize(lambda x, s: s * _square(x), np.ones(2), args=iter([[2.0]] * 4),
                          jac=lambda x, s: s * _square_grad(x), options={"maxiter": 3})
    assert res.nit == 3


@pytest.mark.parametrize("jac", [None, rosen_der], ids=["no-jac", "jac-callable"])
def test_fun_returning_value_and_gradient_without_jac_true_says_so(jac):
    with pytest.raises(ValueError, match="returned a tuple of 2 items.*pass jac=True"):
        adamnb.minimize(lambda x: (rosen(x), rosen_der(x)), np.full(2, 0.5), method="adam",
                        jac=jac, options={"maxiter": 3})


@pytest.mark.parametrize("name", ["return_all", "disp"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_boolean_driver_options_must_be_booleans(name, value):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        adamnb.minimize(rosen, np.full(2, 0.5), jac=rosen_der,
                        options={name: value, "maxiter": 2})
    res = adamnb.minimize(rosen, np.full(2, 0.5), jac=rosen_der,
                          options={name: np.False_, "maxiter": 2})
    assert res.nit == 2


@pytest.mark.parametrize("options", [[("maxiter", 2)], "maxiter=2", (("maxiter", 2),)])
def test_options_must_be_a_mapping(options):
    with pytest.raises(TypeError, match="options must be a dict"):
        adamnb.minimize(rosen, np.full(2, 0.5), jac=rosen_der, options=options)
    with pytest.raises(TypeError, match="options must be a dict"):
        adamnb.minimize_batch(rosenbrock_value_and_grad, np.ones((2, 2)), options=options)
