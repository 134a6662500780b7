"""Adagrad (Duchi, Hazan & Singer, 2011), as torch.optim.Adagrad."""

import math

from adamnb.backends.elements import torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (MAXIMIZE, WEIGHT_DECAY, Hyperparameter, UpdateRule, eps_option,
                                lr_option)


@elementwise
def adagrad_element(x, g, state, i, c):
    maximize, weight_decay, clr, eps = c
    g = torch_gradient(x, g, maximize, weight_decay)
    total = state[0, i] + g * g
    state[0, i] = total
    return x - clr * (g / (math.sqrt(total) + eps))


ADAGRAD = UpdateRule(
    name="adagrad", class_name="Adagrad",
    hyperparameters=(
        lr_option(1e-2),
        Hyperparameter("lr_decay", 0.0, "learning-rate decay: lr_t = lr / (1 + (t-1) lr_decay)"),
        WEIGHT_DECAY,
        Hyperparameter("initial_accumulator_value", 0.0, "initial value of the sum of squares"),
        eps_option(1e-10),
        MAXIMIZE,
    ),
    slots=("sum",),
    coefficients=lambda o, t, lr: {"clr": lr / (1.0 + (t - 1) * o["lr_decay"])},
    element=adagrad_element,
    initial_state=lambda o, slot: o["initial_accumulator_value"],
    summary="adaptive per-coordinate steps from the running sum of squared gradients",
    source="Duchi, Hazan & Singer (2011), JMLR 12; torch.optim.Adagrad",
    doc=r"""
    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)}, \qquad
        g_t \leftarrow g_t + \lambda x_{t-1}, \qquad
        \tilde\eta_t = \eta_t / (1 + (t-1)\,\mathrm{lr\_decay}) \\
        s_t &= s_{t-1} + g_t^2 \qquad (s_0 = \mathrm{initial\_accumulator\_value}) \\
        x_t &= x_{t-1} - \tilde\eta_t\, g_t / (\sqrt{s_t} + \epsilon)""",
)

RULES = (ADAGRAD,)
