"""Learning-rate schedules against their formulas and against torch's schedulers' definitions."""

import json
import math

import numpy as np
import pytest

import adamnb
from adamnb.optim import schedules


def test_formulas():
    assert schedules.Constant(0.1)(7) == 0.1
    assert schedules.InverseSqrt(0.5)(4) == 0.25
    assert schedules.Exponential(1.0, 0.5)(3) == 0.25
    step = schedules.Step(1.0, step_size=10, gamma=0.1)
    assert [step(t) for t in (1, 10, 11, 20, 21)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    cosine = schedules.Cosine(1.0, total_steps=100, min_lr=0.1)
    assert cosine(1) == 1.0 and cosine(101) == pytest.approx(0.1) and cosine(500) == \
        pytest.approx(0.1)
    assert cosine(51) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    warm = schedules.Warmup(schedules.InverseSqrt(1.0), warmup_steps=4)
    assert [warm(t) for t in (1, 2, 4, 16)] == pytest.approx([0.25, 0.5 / math.sqrt(2), 0.5,
                                                              0.25])


@pytest.mark.parametrize("make, message", [
    (lambda: schedules.InverseSqrt(-1), "alpha"), (lambda: schedules.Step(1.0, 0), "step_size"),
    (lambda: schedules.Cosine(1.0, 10, min_lr=float("nan")), "min_lr"),
    (lambda: schedules.Exponential("x", 0.9), "lr"), (lambda: schedules.Warmup(0.1, 1.5),
                                                        "warmup_steps"),
])
def test_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_callable_is_a_schedule_and_its_values_are_checked():
    x = np.array([1.0])
    opt = adamnb.SGD(lr=lambda t: 0.5 if t < 2 else -1.0)
    opt.step(x, np.array([1.0]))
    assert x[0] == 0.5
    with pytest.raises(ValueError, match="lr schedule returned -1.0 at step 2"):
        opt.step(x, np.array([1.0]))


def test_schedule_drives_sgd_exactly():
    x = np.array([0.0])
    opt = adamnb.SGD(lr=schedules.InverseSqrt(1.0))
    for _ in range(4):
        opt.step(x, np.array([-1.0]))
    assert x[0] == pytest.approx(sum(1 / math.sqrt(t) for t in range(1, 5)))


def test_schedules_in_minimize_options():
    res = adamnb.minimize(lambda x: float(x[0] ** 2), [1.0], jac=lambda x: 2 * x,
                          method="sgd", options={"lr": schedules.Exponential(0.1, 0.5),
                                                 "maxiter": 3, "gtol": 0})
    expected = 1.0
    for t in range(1, 4):
        expected -= 0.1 * 0.5 ** (t - 1) * 2 * expected
    assert res.x[0] == pytest.approx(expected)


# --- torch.optim.lr_scheduler's schedulers, against their definitions (torch needed nowhere) --
# Each reference below steps a scheduler as torch's documentation defines it, one epoch at a time
# (recursive forms and counters where torch keeps them), and gives the rate of optimizer step
# t = 1, 2, ...: the rate before the t-th scheduler step. tests/test_schedules_torch.py checks
# the same schedules against torch itself.

STEPS = 300


def stepped(initial, step, steps=STEPS):
    """Rates of steps 1..steps from a scheduler with rate ``initial`` at step 1 and
    ``step(epoch, rate) -> rate`` for epochs 1, 2, ..."""
    rates, rate = [], initial
    for epoch in range(1, steps + 1):
        rates.append(rate)
        rate = step(epoch, rate)
    return np.array(rates)


def values(schedule, steps=STEPS):
    t = np.arange(1, steps + 1)
    rates = schedules.schedule_values(schedule, t)
    assert rates.tolist() == [schedule(int(s)) for s in t]  # vector and scalar agree, bit for bit
    return rates


def test_multistep_decays_at_each_milestone_once_per_occurrence():
    milestones = [30, 80, 80, 200]  # 80 twice: two decays there, as torch's Counter does
    want = stepped(0.1, lambda e, rate: rate * 0.5 ** milestones.count(e))
    np.testing.assert_allclose(values(schedules.MultiStep(0.1, milestones, 0.5)), want,
                               rtol=1e-13)
    assert schedules.MultiStep(0.1, [80, 30], 0.5)(81) == 0.1 * 0.25  # unsorted is fine


@pytest.mark.parametrize("start, end, total", [(1 / 3, 1.0, 5), (0.1, 1.0, 120), (1.0, 0.05, 77)])
def test_linear_is_torchs_recursive_form(start, end, total):
    # LinearLR.get_lr: lr * (1 + (end - start) / (total * start + (e - 1) (end - start))) while
    # e <= total, from lr0 * start.
    def step(e, rate):
        if e > total:
            return rate
        return rate * (1.0 + (end - start) / (total * start + (e - 1) * (end - start)))

    np.testing.assert_allclose(values(schedules.Linear(0.2, start, end, total)),
                               stepped(0.2 * start, step), rtol=1e-12)


@pytest.mark.parametrize("total, power", [(5, 1.0), (250, 2.0), (100, 0.5)])
def test_polynomial_is_torchs_recursive_form(total, power):
    def step(e, rate):
        if e > total:
            return rate
        return rate * ((1.0 - e / total) / (1.0 - (e - 1) / total)) ** power

    got = values(schedules.Polynomial(0.3, total, power))
    np.testing.assert_allclose(got, stepped(0.3, step), rtol=1e-12, atol=1e-300)
    assert got[total] == 0.0  # reaches 0 after total_iters steps and stays


@pytest.mark.parametrize("T_0, T_mult, eta_min", [(10, 1, 0.0), (7, 2, 0.01), (3, 3, 0.0)])
def test_cosine_warm_restarts_counts_as_torchs_step(T_0, T_mult, eta_min):  # noqa: N803
    lr, state = 0.5, {"T_cur": 0, "T_i": T_0}

    def rate():
        cosine = math.cos(math.pi * state["T_cur"] / state["T_i"])
        return eta_min + (lr - eta_min) * (1 + cosine) / 2

    def step(e, _):
        state["T_cur"] += 1
        if state["T_cur"] >= state["T_i"]:
            state["T_cur"] -= state["T_i"]
            state["T_i"] *= T_mult
        return rate()

    np.testing.assert_allclose(values(schedules.CosineWarmRestarts(lr, T_0, T_mult, eta_min)),
                               stepped(rate(), step), rtol=1e-13)


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_is_smiths_triangle(mode):
    # Smith (2017), section 3.1: cycle = floor(1 + e / (2 s)), x = |e / s - 2 cycle + 1|,
    # lr = base + (max - base) max(0, 1 - x) scale.
    base, top, size, gamma = 0.01, 0.1, 25, 0.99
    scale = {"triangular": lambda cycle, e: 1.0,
             "triangular2": lambda cycle, e: 1 / 2 ** (cycle - 1),
             "exp_range": lambda cycle, e: gamma ** e}[mode]
    want = []
    for e in range(STEPS):
        cycle = math.floor(1 + e / (2 * size))
        x = abs(e / size - 2 * cycle + 1)
        want.append(base + (top - base) * max(0.0, 1 - x) * scale(cycle, e))
    got = values(schedules.Cyclic(base, top, size, mode=mode, gamma=gamma))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cyclic_with_a_longer_way_down():
    got = values(schedules.Cyclic(0.0, 1.0, step_size_up=2, step_size_down=6), steps=10)
    np.testing.assert_allclose(got, [0, 0.5, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0, 0.5],
                               atol=1e-15)


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_goes_up_then_down(anneal):
    schedule = schedules.OneCycle(1.0, total_steps=100, pct_start=0.3, anneal_strategy=anneal,
                                  div_factor=20.0, final_div_factor=50.0)
    rates = values(schedule, steps=101)
    # phases end after 29 and 99 steps: max/div at t = 1, max at t = 30, max/div/final_div at 100
    assert rates[0] == pytest.approx(1.0 / 20) and rates[29] == pytest.approx(1.0)
    assert rates[99] == pytest.approx(1.0 / 20 / 50)
    assert np.argmax(rates) == 29 and (np.diff(rates[:30]) > 0).all()
    assert (np.diff(rates[29:100]) < 0).all()
    # halfway down (64 steps done), either anneal is at the mean of its ends
    assert schedule(65) == pytest.approx((1.0 + 1.0 / 1000) / 2, rel=1e-14)
    with pytest.raises(ValueError, match="no rate for step 102"):
        schedule(102)


def test_one_cycle_three_phases_return_to_the_start_before_the_end():
    schedule = schedules.OneCycle(1.0, total_steps=100, pct_start=0.3, three_phase=True)
    rates = values(schedule, steps=100)
    assert rates[29] == pytest.approx(1.0) and rates[58] == pytest.approx(1.0 / 25)
    assert rates[99] == pytest.approx(1.0 / 25 / 1e4)


def test_sequential_restarts_each_schedule_at_its_milestone():
    first, second = schedules.Linear(1.0, 0.1, 1.0, 10), schedules.Exponential(1.0, 0.9)
    third = schedules.MultiStep(0.5, [3], 0.1)
    schedule = schedules.Sequential([first, second, third], milestones=[20, 50])
    t = np.arange(1, 80)
    want = np.where(t <= 20, first.values(t),
                    np.where(t <= 50, second.values(t - 20), third.values(t - 50)))
    np.testing.assert_array_equal(values(schedule, steps=79), want)
    assert schedule.pure
    impure = schedules.Sequential([lambda t: 0.1, 0.2], milestones=[1])
    assert not impure.pure and [impure(1), impure(2)] == [0.1, 0.2]


@pytest.mark.parametrize("make, message", [
    (lambda: schedules.MultiStep(0.1, [-1]), "milestones"),
    (lambda: schedules.Linear(0.1, start_factor=0.0), "start_factor"),
    (lambda: schedules.Linear(0.1, end_factor=1.5), "end_factor"),
    (lambda: schedules.Polynomial(0.1, total_iters=0), "total_iters"),
    (lambda: schedules.CosineWarmRestarts(0.1, T_0=0), "T_0"),
    (lambda: schedules.CosineWarmRestarts(0.1, T_0=5, T_mult=1.5), "T_mult"),
    (lambda: schedules.Cyclic(0.1, 1.0, mode="sawtooth"), "mode"),
    (lambda: schedules.OneCycle(0.1, 100, pct_start=1.5), "pct_start"),
    (lambda: schedules.OneCycle(0.1, 100, anneal_strategy="cosine"), "anneal_strategy"),
    (lambda: schedules.Sequential([0.1, 0.2], milestones=[]), "milestone"),
    (lambda: schedules.Sequential([0.1, 0.2, 0.3], milestones=[5, 5]), "milestones"),
    (lambda: schedules.Sequential([schedules.ReduceLROnPlateau(0.1), 0.1], [5]), "objective"),
    (lambda: schedules.Warmup(schedules.ReduceLROnPlateau(0.1), 5), "objective"),
    (lambda: schedules.ReduceLROnPlateau(0.1, factor=1.0), "factor"),
    (lambda: schedules.ReduceLROnPlateau(0.1, mode="lowest"), "mode"),
    (lambda: schedules.ReduceLROnPlateau(0.1, patience=-1), "patience"),
])
def test_bad_scheduler_parameters_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def plateau_by_hand(lr, metrics, mode="min", factor=0.1, patience=10, threshold=1e-4,
                    threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
    """torch's documented ReduceLROnPlateau.step, written out: the rate before each metric."""
    best = math.inf if mode == "min" else -math.inf
    bad = cooling = 0
    rates = []
    for value in metrics:
        rates.append(lr)
        if mode == "min":
            better = value < (best * (1 - threshold) if threshold_mode == "rel"
                              else best - threshold)
        else:
            better = value > (best * (1 + threshold) if threshold_mode == "rel"
                              else best + threshold)
        best, bad = (value, 0) if better else (best, bad + 1)
        if cooling > 0:
            cooling, bad = cooling - 1, 0
        if bad > patience:
            if lr - max(lr * factor, min_lr) > eps:
                lr = max(lr * factor, min_lr)
            cooling, bad = cooldown, 0
    return rates


def plateau_metrics(seed=0, steps=STEPS):
    """A loss that falls, stalls, falls again, with noise: every branch of the scheduler."""
    rng = np.random.default_rng(seed)
    trend = np.concatenate([np.linspace(1.0, 0.5, 60), np.full(90, 0.5),
                            np.linspace(0.5, 0.2, 50), np.full(steps - 200, 0.2)])
    return (trend + 0.002 * rng.normal(size=steps)).tolist()


PLATEAU_CONFIGS = [
    {},
    {"patience": 3, "factor": 0.5, "cooldown": 5},
    {"patience": 0, "threshold": 1e-3, "threshold_mode": "abs", "min_lr": 0.004},
    {"mode": "max", "patience": 2, "factor": 0.3},
    {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "patience": 4, "eps": 0.05},
]


@pytest.mark.parametrize("config", PLATEAU_CONFIGS, ids=lambda c: str(c) or "defaults")
def test_reduce_on_plateau_follows_torchs_documented_rules(config):
    metrics = plateau_metrics()
    if config.get("mode") == "max":
        metrics = [-m for m in metrics]
    schedule = schedules.ReduceLROnPlateau(0.1, **config)
    rates = []
    for value in metrics:
        rates.append(schedule(len(rates) + 1))
        schedule.step(value)
    assert rates == plateau_by_hand(0.1, metrics, **config)
    assert len(set(rates)) > 1 or config.get("eps") == 0.05  # it did reduce (or eps forbade it)


def test_reduce_on_plateau_round_trips_bit_for_bit_mid_run():
    schedule = schedules.ReduceLROnPlateau(0.1, patience=2, factor=0.37, cooldown=1)
    metrics = plateau_metrics(seed=1)
    for value in metrics[:120]:
        schedule.step(value)
    restored = schedules.Schedule.from_dict(json.loads(json.dumps(schedule.to_dict())))
    assert restored == schedule and restored.state() == schedule.state()
    for value in metrics[120:]:
        schedule.step(value)
        restored.step(value)
        assert restored(1) == schedule(1)
    assert schedule.last_lr < 0.1 * 0.37 ** 2


@pytest.mark.parametrize("schedule", [schedules.InverseSqrt(0.1), schedules.Exponential(0.1, 0.5),
                                      schedules.Constant(0.1), schedules.Step(0.1, 2, 0.5)],
                         ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("t", [0, -1, 1.5, True])
def test_a_step_before_the_first_or_between_steps_is_refused(schedule, t):
    """Steps are 1-based: t = 0 gave InverseSqrt inf and Exponential lr / gamma silently."""
    with pytest.raises(ValueError, match="Invalid step t.*1-based"):
        schedule(t)
    assert schedule(1) == schedule(1.0) == schedule(np.int64(1)) == 0.1


class _NaNFrom5001(adamnb.schedules.Schedule):
    """A user's schedule class whose rate is NaN from step 5001 on."""

    def values(self, t):
        return np.where(np.asarray(t) > 5000, np.nan, 1e-3)


def test_a_schedule_classs_bad_rate_is_named_at_its_step_on_every_path():
    """A Schedule subclass computes a block of rates at once; a bad one raises ValueError naming
    its step when that step is about to be taken (not status 3 blaming the objective, and no
    silent NaN in x), on the host loop, the compiled loop, minimize_batch and the classes, and
    a run that stops before it (maxiter inside the block that holds it) never meets it."""
    quadratic = adamnb.functions.get("quadratic", n=2)
    options = {"lr": _NaNFrom5001(), "maxiter": 20_000, "gtol": 0}
    message = "returned nan at step 5001"
    for compiled in (False, True):
        with pytest.raises(ValueError, match=message):
            adamnb.minimize(quadratic.value_and_grad, [3.0, 3.0], jac=True,
                            options={**options, "compiled": compiled})
        short = adamnb.minimize(quadratic.value_and_grad, [3.0, 3.0], jac=True,
                                options={**options, "compiled": compiled, "maxiter": 5000})
        assert short.status == 1 and short.nit == 5000
    with pytest.raises(ValueError, match=message):
        adamnb.minimize_batch(quadratic.value_and_grad, np.array([[3.0, 3.0]]), options=options)
    optimizer, x = adamnb.Adam(lr=_NaNFrom5001()), np.zeros(2)
    for _ in range(5000):
        optimizer.step(x, np.ones(2))
    with pytest.raises(ValueError, match=message):
        optimizer.step(x, np.ones(2))


def test_onecycle_shorter_than_maxiter_is_fine_until_its_last_step_on_every_path():
    """torch's OneCycleLR raises only when stepped past total_steps: a run that converges before
    then gives the host loop's result on the compiled paths too, which compute rates a block
    ahead; one that goes on raises at the first step past it, on every path."""
    quadratic = adamnb.functions.get("quadratic", n=2)
    options = {"lr": adamnb.schedules.OneCycle(0.05, total_steps=3000), "maxiter": 20_000}
    host = adamnb.minimize(quadratic.fun, [3.0, 3.0], jac=quadratic.grad,
                           options={**options, "compiled": False})
    assert host.status == 0 and host.nit < 3000
    for extra in ({}, {"compiled": True}):
        run = adamnb.minimize(quadratic.fun, [3.0, 3.0], jac=quadratic.grad,
                              options={**options, **extra})
        assert (run.status, run.nit, run.x.tobytes()) == (0, host.nit, host.x.tobytes())
    batch = adamnb.minimize_batch(quadratic.value_and_grad, np.array([[3.0, 3.0]]),
                                  options=options)
    assert batch.x[0].tobytes() == host.x.tobytes()
    for compiled in (False, True):
        with pytest.raises(ValueError, match="no rate for step 3002"):
            adamnb.minimize(quadratic.fun, [3.0, 3.0], jac=quadratic.grad,
                            options={**options, "gtol": 0, "compiled": compiled})
