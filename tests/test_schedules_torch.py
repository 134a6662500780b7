"""The schedules against torch.optim.lr_scheduler itself: for 300 optimizer steps, the rate of step
t is the learning rate torch's optimizer holds at its t-th step, with the scheduler stepped once
after every optimizer step (rtol 1e-12). Skipped where torch is not installed;
tests/test_schedules.py checks the same schedules against their definitions everywhere.
"""

import numpy as np
import pytest

from adamnb.optim import schedules
from tests.test_schedules import PLATEAU_CONFIGS, plateau_metrics

torch = pytest.importorskip("torch")
lr_scheduler = torch.optim.lr_scheduler

STEPS = 300
RTOL = 1e-12
LR = 0.1


def torch_rates(make, steps=STEPS, metrics=None, lr=LR):
    """The rate of each of ``steps`` steps of an SGD whose scheduler is ``make(optimizer)``."""
    parameter = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([parameter], lr=lr)
    scheduler = make(optimizer)
    rates = []
    for t in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
        if t < steps - 1:  # OneCycleLR refuses a step past its total; none is needed here
            scheduler.step() if metrics is None else scheduler.step(metrics[t])
    return np.array(rates, dtype=np.float64)


def ours(schedule, steps=STEPS):
    return schedules.schedule_values(schedule, np.arange(1, steps + 1))


CASES = {
    "MultiStep": (schedules.MultiStep(LR, [40, 90, 90, 200], gamma=0.3),
                  lambda o: lr_scheduler.MultiStepLR(o, [40, 90, 90, 200], gamma=0.3)),
    "Linear": (schedules.Linear(LR, start_factor=0.05, end_factor=0.9, total_iters=150),
               lambda o: lr_scheduler.LinearLR(o, start_factor=0.05, end_factor=0.9,
                                               total_iters=150)),
    "Linear-defaults": (schedules.Linear(LR), lambda o: lr_scheduler.LinearLR(o)),
    "Linear-down": (schedules.Linear(LR, 1.0, 0.01, 250),
                    lambda o: lr_scheduler.LinearLR(o, 1.0, 0.01, 250)),
    "Polynomial": (schedules.Polynomial(LR, total_iters=200, power=2.0),
                   lambda o: lr_scheduler.PolynomialLR(o, total_iters=200, power=2.0)),
    "Polynomial-defaults": (schedules.Polynomial(LR), lambda o: lr_scheduler.PolynomialLR(o)),
    "CosineWarmRestarts": (schedules.CosineWarmRestarts(LR, T_0=17, eta_min=0.001),
                           lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=17,
                                                                              eta_min=0.001)),
    "CosineWarmRestarts-mult": (schedules.CosineWarmRestarts(LR, T_0=5, T_mult=2),
                                lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5,
                                                                                   T_mult=2)),
    "Cyclic": (schedules.Cyclic(0.01, 0.2, step_size_up=20),
               lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.2, step_size_up=20,
                                               cycle_momentum=False)),
    "Cyclic-triangular2": (schedules.Cyclic(0.01, 0.2, 15, 35, mode="triangular2"),
                           lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.2, 15, 35,
                                                           mode="triangular2",
                                                           cycle_momentum=False)),
    "Cyclic-exp_range": (schedules.Cyclic(0.01, 0.2, 25, mode="exp_range", gamma=0.995),
                         lambda o: lr_scheduler.CyclicLR(o, 0.01, 0.2, 25, mode="exp_range",
                                                         gamma=0.995, cycle_momentum=False)),
    "OneCycle": (schedules.OneCycle(LR, total_steps=STEPS - 1),
                 lambda o: lr_scheduler.OneCycleLR(o, LR, total_steps=STEPS - 1,
                                                   cycle_momentum=False)),
    "OneCycle-linear": (schedules.OneCycle(LR, 400, pct_start=0.1, anneal_strategy="linear",
                                           div_factor=10.0, final_div_factor=100.0),
                        lambda o: lr_scheduler.OneCycleLR(o, LR, 400, pct_start=0.1,
                                                          anneal_strategy="linear",
                                                          div_factor=10.0,
                                                          final_div_factor=100.0,
                                                          cycle_momentum=False)),
    "OneCycle-three_phase": (schedules.OneCycle(LR, 320, pct_start=0.2, three_phase=True),
                             lambda o: lr_scheduler.OneCycleLR(o, LR, 320, pct_start=0.2,
                                                               three_phase=True,
                                                               cycle_momentum=False)),
    "Sequential": (schedules.Sequential([schedules.Linear(LR, 0.1, 1.0, 30),
                                         schedules.Exponential(LR, 0.99)], milestones=[50]),
                   lambda o: lr_scheduler.SequentialLR(
                       o, [lr_scheduler.LinearLR(o, 0.1, 1.0, 30),
                           lr_scheduler.ExponentialLR(o, 0.99)], milestones=[50])),
    "Sequential-three": (schedules.Sequential([schedules.Constant(LR),
                                               schedules.MultiStep(LR, [20, 60], 0.5),
                                               schedules.Polynomial(LR, 80, 1.5)],
                                              milestones=[30, 150]),
                         lambda o: lr_scheduler.SequentialLR(
                             o, [lr_scheduler.ConstantLR(o, factor=1.0, total_iters=1),
                                 lr_scheduler.MultiStepLR(o, [20, 60], 0.5),
                                 lr_scheduler.PolynomialLR(o, 80, 1.5)],
                             milestones=[30, 150])),
    "Exponential": (schedules.Exponential(LR, 0.98),
                    lambda o: lr_scheduler.ExponentialLR(o, 0.98)),
    "Step": (schedules.Step(LR, 35, 0.5), lambda o: lr_scheduler.StepLR(o, 35, 0.5)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rates_are_torchs(name):
    schedule, make = CASES[name]
    want = torch_rates(make)
    got = ours(schedule)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    assert len(np.unique(want)) > 2  # the schedule moves within the 300 steps


def test_one_cycle_ends_where_torch_stops():
    schedule = schedules.OneCycle(LR, total_steps=10)
    want = torch_rates(lambda o: lr_scheduler.OneCycleLR(o, LR, total_steps=10,
                                                         cycle_momentum=False), steps=11)
    np.testing.assert_allclose(ours(schedule, 11), want, rtol=RTOL)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=LR)
    scheduler = lr_scheduler.OneCycleLR(optimizer, LR, total_steps=10, cycle_momentum=False)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError):
        optimizer.step()
        scheduler.step()  # torch: "Tried to step 11 times"
    with pytest.raises(ValueError, match="no rate for step 12"):
        schedule(12)


@pytest.mark.parametrize("config", PLATEAU_CONFIGS, ids=lambda c: str(c) or "defaults")
def test_reduce_on_plateau_rates_are_torchs(config):
    metrics = plateau_metrics()
    if config.get("mode") == "max":
        metrics = [-m for m in metrics]
    want = torch_rates(lambda o: lr_scheduler.ReduceLROnPlateau(o, **config), metrics=metrics)
    schedule = schedules.ReduceLROnPlateau(LR, **config)
    got = []
    for t, value in enumerate(metrics, start=1):
        got.append(schedule(t))
        schedule.step(value)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
