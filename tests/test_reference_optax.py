"""Cross-check the optax rules against optax itself: the NumPy reference (tests/reference.py) and
adamnb's optimizer classes, step for step, 60 steps in float64 (JAX with x64 enabled).

optax is an independent implementation (its transforms composed as its aliases compose them:
``scale_by_adam``-like scaling, then decay, then ``scale_by_learning_rate``); it is in the ``test``
extra, so these checks run in CI. optax counts steps from 0: its schedules get ``t - 1`` where
adamnb's get ``t``.
"""

import math

import numpy as np
import pytest

from tests.reference import DEFAULTS, reference_run
from tests.test_rules import CASES as RULE_CASES

optax = pytest.importorskip("optax")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

import optax.contrib  # noqa: E402

import adamnb  # noqa: E402

N = 9
STEPS = 60
RTOL, ATOL = 1e-10, 1e-13


def make_problem(seed=0, n=N, steps=STEPS):
    """A noisy quadratic's gradient g(x, t) = A x + b_t, and x0."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, n))
    a = q @ q.T / n + 0.1 * np.eye(n)
    b = rng.normal(size=(steps + 1, n))
    x0 = rng.normal(size=n) * 2.0

    def grad(x, t):
        return a @ x + b[t - 1]

    return x0, grad


def _float64(count):
    # JAX divides int32 counts in float32 even with x64 enabled; the schedules here work in
    # float64 (optax's own warmup_constant_schedule does not: see the schedule-free test below).
    return jnp.asarray(count, jnp.float64)


def alpha_warmup(alpha, warmup):
    """The AdEMAMix paper's alpha scheduler as optax takes it: a function of the count."""
    return lambda count: jnp.minimum(_float64(count) * alpha / warmup, alpha)


def beta3_warmup(beta_start, beta3, warmup):
    """The AdEMAMix paper's beta3 scheduler (Pagliardini et al., 2024, section 3), a function of
    the count."""
    def schedule(count):
        count = _float64(count)
        a = count / warmup
        ln_start, ln_end = math.log(beta_start), math.log(beta3)
        warming = jnp.exp(ln_start * ln_end / ((1.0 - a) * ln_end + a * ln_start))
        return jnp.where(count < warmup, jnp.minimum(warming, beta3), beta3)
    return schedule


def optax_transformation(method, options, learning_rate):
    """optax's optimizer for adamnb's ``method`` and options (adamnb's names)."""
    o = {**DEFAULTS[method], **options}
    if method == "rmsprop":  # optax's eps placement option; torch's RMSprop is the default
        return optax.rmsprop(learning_rate, decay=o["alpha"], eps=o["eps"],
                             eps_in_sqrt=o["eps_in_sqrt"], centered=o["centered"])
    if method == "lion":
        return optax.lion(learning_rate, b1=o["beta1"], b2=o["beta2"],
                          weight_decay=o["weight_decay"])
    if method == "yogi":  # optax.yogi's own chain, with the accumulator's start exposed
        return optax.chain(optax.scale_by_yogi(b1=o["beta1"], b2=o["beta2"], eps=o["eps"],
                                               initial_accumulator_value=o[
                                                   "initial_accumulator_value"]),
                           optax.scale_by_learning_rate(learning_rate))
    if method == "adabelief":
        return optax.adabelief(learning_rate, b1=o["beta1"], b2=o["beta2"], eps=o["eps"],
                               eps_root=o["eps_root"], nesterov=o["nesterov"])
    if method == "adan":
        return optax.adan(learning_rate, b1=o["beta1"], b2=o["beta2"], b3=o["beta3"],
                          eps=o["eps"], eps_root=o["eps_root"], weight_decay=o["weight_decay"])
    if method == "adopt":
        return optax.contrib.adopt(learning_rate, b1=o["beta1"], b2=o["beta2"], eps=o["eps"],
                                   nesterov=o["nesterov"], use_clipping=o["use_clipping"])
    if method == "ademamix":
        alpha = (alpha_warmup(o["alpha"], o["alpha_warmup"]) if o["alpha_warmup"]
                 else o["alpha"])
        b3 = (beta3_warmup(o["beta1"], o["beta3"], o["beta3_warmup"]) if o["beta3_warmup"]
              else o["beta3"])
        return optax.contrib.ademamix(learning_rate, b1=o["beta1"], b2=o["beta2"], b3=b3,
                                      alpha=alpha, eps=o["eps"], eps_root=o["eps_root"],
                                      weight_decay=o["weight_decay"])
    if method == "schedule_free_adamw":
        if o["warmup_steps"]:  # optax's warmup_constant_schedule(0, lr, warmup_steps), float64
            peak, warmup = learning_rate, o["warmup_steps"]
            learning_rate = (lambda count: peak * jnp.minimum(_float64(count) / warmup, 1.0))
        return optax.contrib.schedule_free_adamw(
            learning_rate, warmup_steps=None, b1=o["beta1"],
            b2=o["beta2"], eps=o["eps"], weight_decay=o["weight_decay"],
            weight_lr_power=o["weight_lr_power"])
    if method == "lamb":
        return optax.lamb(learning_rate, b1=o["beta1"], b2=o["beta2"], eps=o["eps"],
                          eps_root=o["eps_root"], weight_decay=o["weight_decay"])
    if method == "novograd":
        return optax.novograd(learning_rate, b1=o["beta1"], b2=o["beta2"], eps=o["eps"],
                              eps_root=o["eps_root"], weight_decay=o["weight_decay"])
    if method == "prodigy":
        return optax.contrib.prodigy(learning_rate, betas=(o["beta1"], o["beta2"]),
                                     beta3=o["beta3"], eps=o["eps"], estim_lr0=o["estim_lr0"],
                                     estim_lr_coef=o["estim_lr_coef"],
                                     weight_decay=o["weight_decay"],
                                     safeguard_warmup=o["safeguard_warmup"])
    raise ValueError(method)


def optax_run(method, x0, grad, steps, lr_schedule=None, **options):
    """The iterates of optax's ``method``, and its evaluation point for schedule-free AdamW."""
    lr = options.pop("lr", DEFAULTS[method]["lr"])
    learning_rate = lr if lr_schedule is None else (lambda count: lr_schedule(count + 1))
    transformation = optax_transformation(method, options, learning_rate)
    params = jnp.asarray(x0)
    state = transformation.init(params)
    out = []
    for t in range(1, steps + 1):
        g = jnp.asarray(grad(np.asarray(params), t))
        updates, state = transformation.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    extras = {}
    if method == "schedule_free_adamw":
        extras["x"] = np.asarray(optax.contrib.schedule_free_eval_params(state, params))
    return out, extras


#: The optax rules' cases of tests/test_rules.py, and a few more.
OPTAX_METHODS = ("lion", "yogi", "adabelief", "adan", "adopt", "ademamix", "schedule_free_adamw",
                 "lamb", "novograd", "prodigy")
CASES = [case for case in RULE_CASES if case[0] in OPTAX_METHODS] + [
    ("adabelief", {"lr": 0.01, "beta2": 0.99, "eps": 1e-8, "eps_root": 0.0}),
    ("adan", {"lr": 0.01, "eps_root": 0.0}),
    ("adopt", {"lr": 0.01, "beta1": 0.8, "eps": 1e-4}),
    ("ademamix", {"lr": 0.01, "beta3": 0.999, "alpha_warmup": 30, "beta3_warmup": 40}),
    ("schedule_free_adamw", {"lr": 0.01, "warmup_steps": 10}),
    ("lamb", {"lr": 0.02, "weight_decay": 0.3}),
    ("novograd", {"lr": 0.02, "beta2": 0.9, "weight_decay": 0.3}),
    ("prodigy", {"lr": 0.3, "beta1": 0.8, "estim_lr_coef": 0.5}),
    # eps_in_sqrt, the placement of optax (its default) and TensorFlow/Keras; eps large enough
    # that the placement matters
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 0.5, "eps_in_sqrt": True}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 0.5, "eps_in_sqrt": True, "centered": True}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 0.5}),
]
IDS = [f"{m}-{','.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for m, o in CASES]


def assert_runs_close(got, want):
    assert len(got) == len(want)
    for t, (a, b) in enumerate(zip(got, want), start=1):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"step {t}")


@pytest.mark.parametrize("method, options", CASES, ids=IDS)
def test_reference_matches_optax(method, options):
    x0, grad = make_problem()
    ours, extras = reference_run(method, x0, grad, steps=STEPS, outputs=True, **options)
    want, want_extras = optax_run(method, x0, grad, STEPS, **options)
    assert_runs_close(ours, want)
    for name, value in want_extras.items():
        np.testing.assert_allclose(extras[name], value, rtol=RTOL, atol=ATOL, err_msg=name)
    assert np.abs(ours[-1] - x0).max() > 1e-3  # the run moved


@pytest.mark.parametrize("method, options", CASES, ids=IDS)
def test_adamnb_matches_optax_step_for_step(method, options):
    x0, grad = make_problem(seed=1)
    optimizer, x, ours = adamnb.optim.OPTIMIZERS[method](**options), x0.copy(), []
    for t in range(1, STEPS + 1):
        optimizer.step(x, grad(x, t))
        ours.append(x.copy())
    want, want_extras = optax_run(method, x0, grad, STEPS, **options)
    assert_runs_close(ours, want)
    if "x" in want_extras:  # schedule_free_eval_params
        np.testing.assert_allclose(optimizer.outputs(x)["x"], want_extras["x"], rtol=RTOL,
                                   atol=ATOL)


@pytest.mark.parametrize("method", ["lion", "yogi", "adabelief", "adan", "adopt", "ademamix",
                                    "lamb", "novograd", "prodigy"])
def test_a_schedule_matches_optax(method):
    """lr(t) here is optax's learning_rate(t - 1). (Schedule-free AdamW is left out: optax calls
    a callable learning_rate one step ahead for its averaging weights, see its rule's notes.)"""
    x0, grad = make_problem(seed=2)

    def schedule(t):
        return 0.02 * (0.55 + 0.45 * jnp.cos(math.pi * t / STEPS))

    ours = reference_run(method, x0, grad, lr_schedule=lambda t: float(schedule(t)),
                         steps=STEPS)
    want, _ = optax_run(method, x0, grad, STEPS, lr_schedule=schedule)
    assert_runs_close(ours, want)


def test_schedule_free_minimize_reports_optax_evaluation_point():
    """minimize's res.x is optax's schedule_free_eval_params; res.y is optax's params."""
    x0, grad = make_problem(seed=3)
    fixed = lambda x: grad(x, 1)  # noqa: E731
    res = adamnb.minimize(lambda x: 0.0, x0, method="schedule_free_adamw", jac=fixed,
                          options={"lr": 0.01, "maxiter": STEPS, "gtol": 0})
    want, extras = optax_run("schedule_free_adamw", x0, lambda x, t: fixed(x), STEPS, lr=0.01)
    np.testing.assert_allclose(res.x, extras["x"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.y, want[-1], rtol=RTOL, atol=ATOL)
    assert np.abs(res.x - res.y).max() > 1e-3


def test_schedule_free_warmup_matches_optaxs_own_to_its_float32_schedule():
    """optax.contrib.schedule_free_adamw(warmup_steps=...) computes its warm-up rates in float32
    (JAX divides the int32 step count in float32 even with x64), so it agrees with the float64
    warm-up only to float32 rounding of the rate; the float64 schedule matches to 1e-10 above."""
    x0, grad = make_problem(seed=4)
    transformation = optax.contrib.schedule_free_adamw(0.01, warmup_steps=10)
    params, optimizer, x = jnp.asarray(x0), adamnb.ScheduleFreeAdamW(lr=0.01, warmup_steps=10), \
        x0.copy()
    state = transformation.init(params)
    for t in range(1, STEPS + 1):
        updates, state = transformation.update(jnp.asarray(grad(np.asarray(params), t)), state,
                                               params)
        params = optax.apply_updates(params, updates)
        optimizer.step(x, grad(x, t))
    np.testing.assert_allclose(x, np.asarray(params), rtol=1e-6)
