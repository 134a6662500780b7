"""SGD with optional momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD)."""

import numpy as np

from adamnb.backends.elements import torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import MAXIMIZE, WEIGHT_DECAY, Hyperparameter, UpdateRule, lr_option


@elementwise
def sgd_element(x, g, state, i, c):
    (maximize, weight_decay, momentum_now, one_minus_dampening_now, lr, use_momentum, nesterov,
     momentum) = c
    g = torch_gradient(x, g, maximize, weight_decay)
    if use_momentum != 0:
        # On step 1 the coefficients are (0, 1): the buffer becomes exactly g, as torch clones it.
        buffer = momentum_now * state[0, i] + one_minus_dampening_now * g
        state[0, i] = buffer
        if nesterov != 0:
            g = g + momentum * buffer
        else:
            g = buffer
    return x - lr * g


def _coefficients(o, t, lr):
    first = t == 1
    return {"momentum_now": np.where(first, 0.0, o["momentum"]),
            "one_minus_dampening_now": np.where(first, 1.0, 1.0 - o["dampening"]),
            "use_momentum": float(o["momentum"] != 0)}


def _check(o):
    if o["nesterov"] and (o["momentum"] <= 0 or o["dampening"] != 0):
        raise ValueError("Invalid nesterov=True: Nesterov momentum requires momentum > 0 and "
                         f"dampening = 0 (got momentum={o['momentum']!r}, "
                         f"dampening={o['dampening']!r})")


SGD = UpdateRule(
    name="sgd", class_name="SGD",
    hyperparameters=(
        lr_option(1e-3),
        Hyperparameter("momentum", 0.0, "momentum factor"),
        Hyperparameter("dampening", 0.0, "dampening for momentum", high=1.0),
        WEIGHT_DECAY,
        Hyperparameter("nesterov", False, "use Nesterov momentum", kind="bool"),
        MAXIMIZE,
    ),
    slots=("momentum_buffer",),
    rows=lambda o: 1 if o["momentum"] != 0 else 0,
    coefficients=_coefficients,
    element=sgd_element,
    check=_check,
    summary="stochastic gradient descent with optional (Nesterov) momentum",
    source="Robbins & Monro (1951); Nesterov momentum as in Sutskever et al. (2013); "
           "torch.optim.SGD",
    doc=r"""With weight decay :math:`\lambda`, momentum :math:`\mu`, dampening :math:`\tau`:

    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)} \\
        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        b_t &= \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1-\tau) g_t & t > 1 \end{cases} \\
        g_t &\leftarrow g_t + \mu b_t \ \text{(nesterov)} \quad\text{or}\quad g_t \leftarrow b_t \\
        x_t &= x_{t-1} - \eta_t g_t

    The momentum steps apply only when :math:`\mu \ne 0`. Nesterov requires :math:`\mu > 0` and
    :math:`\tau = 0`.""",
)

RULES = (SGD,)
