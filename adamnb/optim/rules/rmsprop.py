"""RMSprop (Hinton, 2012), as torch.optim.RMSprop, with optional momentum and centering."""

import math

from adamnb.backends.elements import torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (MAXIMIZE, WEIGHT_DECAY, Hyperparameter, UpdateRule, eps_option,
                                lr_option)


@elementwise
def rmsprop_element(x, g, state, i, c):
    maximize, weight_decay, alpha, one_minus_alpha, eps_inside, eps, lr, momentum, centered = c
    g = torch_gradient(x, g, maximize, weight_decay)
    square_avg = alpha * state[0, i] + one_minus_alpha * g * g
    state[0, i] = square_avg
    if centered != 0:
        grad_avg = state[2, i] + one_minus_alpha * (g - state[2, i])
        state[2, i] = grad_avg
        avg = math.sqrt(square_avg - grad_avg * grad_avg + eps_inside) + eps
    else:
        avg = math.sqrt(square_avg + eps_inside) + eps
    if momentum > 0:
        buffer = momentum * state[1, i] + g / avg
        state[1, i] = buffer
        return x - lr * buffer
    return x - lr * (g / avg)


RMSPROP = UpdateRule(
    name="rmsprop", class_name="RMSprop",
    hyperparameters=(
        lr_option(1e-2),
        Hyperparameter("alpha", 0.99, "smoothing constant of the squared-gradient average",
                       high=1.0),
        eps_option(1e-8),
        WEIGHT_DECAY,
        Hyperparameter("momentum", 0.0, "momentum factor"),
        Hyperparameter("centered", False, "normalise by the estimated variance of the gradient",
                       kind="bool"),
        Hyperparameter("eps_in_sqrt", False, "add eps under the square root, "
                       "g / sqrt(v + eps), as optax's default and TensorFlow's ApplyRMSProp do",
                       kind="bool"),
        MAXIMIZE,
    ),
    slots=("square_avg", "momentum_buffer", "grad_avg"),
    rows=lambda o: 3 if o["centered"] else (2 if o["momentum"] > 0 else 1),
    coefficients=lambda o, t, lr: {
        # one of the two is 0: sqrt(v + 0) is sqrt(v) exactly, so torch's bits are kept
        "eps_inside": o["eps"] if o["eps_in_sqrt"] else 0.0,
        "eps": 0.0 if o["eps_in_sqrt"] else o["eps"]},
    element=rmsprop_element,
    summary="steps scaled by a running root-mean-square of the gradient (Hinton, 2012)",
    source="Hinton, Srivastava & Swersky, Coursera lecture 6e (2012); centered form: Graves "
           "(2013); torch.optim.RMSprop; eps_in_sqrt: optax.rmsprop, tf.raw_ops.ApplyRMSProp",
    doc=r"""
    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)}, \qquad g_t \leftarrow g_t + \lambda x_{t-1} \\
        v_t &= \alpha v_{t-1} + (1-\alpha) g_t^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1-\alpha) g_t, \quad
        d_t = \sqrt{v_t - \bar g_t^2} + \epsilon \ \text{(centered)}
        \quad\text{else}\quad d_t = \sqrt{v_t} + \epsilon
        \quad\text{(eps_in_sqrt: } \sqrt{\cdot + \epsilon} \text{ instead)} \\
        b_t &= \mu b_{t-1} + g_t / d_t, \quad x_t = x_{t-1} - \eta_t b_t \ (\mu > 0)
        \quad\text{else}\quad x_t = x_{t-1} - \eta_t g_t / d_t""",
)

RULES = (RMSPROP,)
