"""Adadelta (Zeiler, 2012), as torch.optim.Adadelta (with torch's extra ``lr``, default 1)."""

import math

from adamnb.backends.elements import torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (MAXIMIZE, WEIGHT_DECAY, Hyperparameter, UpdateRule, eps_option,
                                lr_option)


@elementwise
def adadelta_element(x, g, state, i, c):
    maximize, weight_decay, rho, one_minus_rho, eps, lr = c
    g = torch_gradient(x, g, maximize, weight_decay)
    square_avg = rho * state[0, i] + one_minus_rho * g * g
    state[0, i] = square_avg
    delta = math.sqrt(state[1, i] + eps) / math.sqrt(square_avg + eps) * g
    state[1, i] = rho * state[1, i] + one_minus_rho * delta * delta
    return x - lr * delta


ADADELTA = UpdateRule(
    name="adadelta", class_name="Adadelta",
    hyperparameters=(
        lr_option(1.0),
        Hyperparameter("rho", 0.9, "decay of the running averages", high=1.0),
        eps_option(1e-6),
        WEIGHT_DECAY,
        MAXIMIZE,
    ),
    slots=("square_avg", "acc_delta"),
    element=adadelta_element,
    summary="unit-corrected steps from running averages of squared gradients and updates "
            "(Zeiler, 2012)",
    source="Zeiler (2012), arXiv:1212.5701; torch.optim.Adadelta",
    doc=r"""
    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)}, \qquad g_t \leftarrow g_t + \lambda x_{t-1} \\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2 \\
        \Delta x_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &= \rho u_{t-1} + (1-\rho) \Delta x_t^2 \\
        x_t &= x_{t-1} - \eta_t \Delta x_t

    Zeiler's paper has no :math:`\eta` (it is 1, torch's default).""",
)

RULES = (ADADELTA,)
