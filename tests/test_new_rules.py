"""What issue 15's rules add beside their steps (those are in tests/test_rules.py, the contract
table and the torch and optax cross-checks): validated options, the outputs a run reports
(ASGD's average, schedule-free AdamW's evaluation point) on every driver, and the sources that
``adamnb methods`` and ``show_options`` give for every rule."""

import numpy as np
import pytest

import adamnb
from adamnb.optim import RULES
from tests.reference import reference_run


@pytest.mark.parametrize("make, message", [
    (lambda: adamnb.Rprop(eta_minus=1.0), "eta_minus"),
    (lambda: adamnb.Rprop(eta_minus=0.0), "eta_minus"),
    (lambda: adamnb.Rprop(eta_plus=1.0), "eta_plus"),
    (lambda: adamnb.Rprop(step_size_min=1.0, step_size_max=0.5), "step sizes: step_size_min"),
    (lambda: adamnb.ASGD(t0=float("nan")), "t0"),
    (lambda: adamnb.ASGD(lambd=-1.0), "lambd"),
    (lambda: adamnb.Lion(beta1=1.0), "beta1"),
    (lambda: adamnb.Adan(beta3=-0.1), "beta3"),
    (lambda: adamnb.ADOPT(use_clipping="yes"), "use_clipping"),
    (lambda: adamnb.AdEMAMix(alpha_warmup=2.5), "alpha_warmup"),
    (lambda: adamnb.AdEMAMix(beta3_warmup=-1), "beta3_warmup"),
    (lambda: adamnb.ScheduleFreeAdamW(beta1=0.0), "beta1"),
    (lambda: adamnb.ScheduleFreeAdamW(warmup_steps=True), "warmup_steps"),
    (lambda: adamnb.NAdam(decoupled_weight_decay=2), "decoupled_weight_decay"),
    (lambda: adamnb.SGD(maximize="no"), "maximize"),
])
def test_bad_options_are_refused_with_their_name(make, message):
    with pytest.raises(ValueError, match=f"Invalid {message}"):
        make()


def test_a_whole_number_option_takes_numpy_integers_and_whole_floats():
    assert adamnb.AdEMAMix(alpha_warmup=np.int64(7)).options["alpha_warmup"] == 7
    assert adamnb.ScheduleFreeAdamW(warmup_steps=10.0).options["warmup_steps"] == 10
    assert isinstance(adamnb.ScheduleFreeAdamW(warmup_steps=10.0).options["warmup_steps"], int)


def _gradient(x):
    return 2.0 * (x - np.arange(x.size))


def _loss(x):
    return float(np.sum((x - np.arange(x.size)) ** 2))


def test_outputs_are_empty_before_the_first_step_and_for_other_rules():
    x = np.zeros(3)
    assert adamnb.ASGD().outputs(x) == {} and adamnb.Adam().outputs(x) == {}
    adam = adamnb.Adam()
    adam.step(x, _gradient(x))
    assert adam.outputs(x) == {}


@pytest.mark.parametrize("method, options", [
    ("asgd", {"lr": 0.05, "t0": 10.0}),
    ("schedule_free_adamw", {"lr": 0.05, "warmup_steps": 5}),
])
def test_the_outputs_are_the_references_on_every_driver(method, options):
    x0 = np.array([0.5, -1.0, 2.0, 0.0])
    steps = 40
    iterates, extras = reference_run(method, x0, lambda x, t: _gradient(x), steps=steps,
                                     outputs=True, **options)
    run = {**options, "maxiter": steps, "gtol": 0}
    res = adamnb.minimize(_loss, x0, method=method, jac=_gradient, options=run)
    for name, value in extras.items():
        np.testing.assert_allclose(res[name], value, rtol=1e-12, err_msg=name)
    if "x" not in extras:
        np.testing.assert_allclose(res.x, iterates[-1], rtol=1e-12)
    # the class gives the same, from its state
    optimizer, x = adamnb.optim.OPTIMIZERS[method](**options), x0.copy()
    for _ in range(steps):
        optimizer.step(x, _gradient(x))
    for name, value in optimizer.outputs(x).items():
        assert value.tobytes() == np.asarray(res[name]).tobytes(), name
    # minimize_batch: each start's outputs are its own run's
    quadratic = adamnb.functions.get("quadratic", n=4)
    starts = np.stack([x0, x0 + 1.0])
    batch = adamnb.minimize_batch(quadratic.value_and_grad, starts, method=method, jac=True,
                                  options=run)
    for row, start in enumerate(starts):
        single = adamnb.minimize(quadratic.value_and_grad, start, method=method, jac=True,
                                 options=run)
        for name in extras:
            assert batch[name][row].tobytes() == single[name].tobytes(), name


def test_schedule_free_reports_fun_and_jac_at_the_evaluation_point_x():
    """scipy's contract: res.fun and res.jac are the objective and gradient at res.x (the
    average), not at y where the steps' gradients were taken; that evaluation is counted."""
    res = adamnb.minimize(_loss, np.zeros(3), method="schedule_free_adamw", jac=_gradient,
                          options={"lr": 0.1, "maxiter": 50, "gtol": 0})
    assert not np.allclose(res.x, res.y)
    assert res.fun == _loss(res.x) and np.array_equal(res.jac, _gradient(res.x))
    assert (res.nit, res.nfev, res.njev) == (50, 52, 52)  # x0, 50 steps, and res.x
    beta1 = RULES["schedule_free_adamw"].defaults["beta1"]
    np.testing.assert_allclose(res.x, (res.y - (1 - beta1) * res.z) / beta1, rtol=1e-14)


@pytest.mark.parametrize("path", ["host", "compiled", "stochastic", "batch"])
def test_schedule_free_fun_and_jac_are_at_res_x_on_every_path(path):
    rosen = adamnb.functions.get("rosenbrock", n=2)
    options = {"lr": 0.01, "maxiter": 60, "gtol": 0}
    x0 = np.array([-1.2, 1.0])
    if path == "batch":
        res = adamnb.minimize_batch(rosen.value_and_grad, np.stack([x0, x0 + 0.5]),
                                    method="schedule_free_adamw", options=options)
        for row in range(2):
            f, g = rosen.value_and_grad(res.x[row])
            assert res.fun[row] == f and np.array_equal(res.jac[row], g)
            f_y = rosen.value_and_grad(res.y[row])[0]
            assert f_y != f
        assert list(res.nfev) == [62, 62] and list(res.njev) == [62, 62]
        assert res.best == int(np.argmin([rosen.value_and_grad(x)[0] for x in res.x]))
        return
    if path == "stochastic":
        # a minibatch stream: fun at res.x is taken with the last minibatch drawn
        scales = iter([(float(s),) for s in 1.0 + np.arange(61) / 100])
        res = adamnb.minimize(lambda x, s: s * _loss(x), np.zeros(3), args=scales,
                              method="schedule_free_adamw", jac=lambda x, s: s * _gradient(x),
                              options=options)
        assert res.fun == 1.6 * _loss(res.x) and np.array_equal(res.jac, 1.6 * _gradient(res.x))
        return
    res = adamnb.minimize(rosen.value_and_grad, x0, method="schedule_free_adamw", jac=True,
                          options={**options, "compiled": path == "compiled"})
    f, g = rosen.value_and_grad(res.x)
    assert res.fun == f and np.array_equal(res.jac, g)
    assert rosen.value_and_grad(res.y)[0] != f
    assert (res.nfev, res.njev) == (62, 62)


def test_every_rule_names_its_source_in_methods_and_show_options(capsys):
    from adamnb import cli

    assert cli.main(["methods"]) == 0
    listing = capsys.readouterr().out
    for name, rule in RULES.items():
        assert f"source: {rule.source}" in listing, name
        text = adamnb.show_options(name, disp=False)
        assert f"Source: {rule.source}." in text and rule.library in text
        assert rule.library.split(".")[0] in ("torch", "optax")
        assert rule.library.split(".")[-1] in rule.source  # the library the formulas follow
