"""Learning-rate schedules against their formulas and against torch's schedulers' definitions."""

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
