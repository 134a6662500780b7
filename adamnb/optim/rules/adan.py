"""Adan, adaptive Nesterov momentum (Xie et al., 2022), as optax.adan."""

import math

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, eps_root_option, moment_options


@elementwise
def adan_element(x, g, state, i, c):
    (not_first, one_minus_beta1, beta1, one_minus_beta2, beta2, one_minus_beta3, beta3,
     bias_correction1, bias_correction2, bias_correction3, eps_root, eps, weight_decay, lr) = c
    difference = not_first * (g - state[3, i])  # g_t - g_{t-1}, and 0 at the first step
    m = one_minus_beta1 * g + beta1 * state[0, i]
    v = one_minus_beta2 * difference + beta2 * state[1, i]
    corrected = g + one_minus_beta2 * difference
    n = one_minus_beta3 * (corrected * corrected) + beta3 * state[2, i]
    state[0, i] = m
    state[1, i] = v
    state[2, i] = n
    state[3, i] = g
    u = m / bias_correction1 + one_minus_beta2 * (v / bias_correction2)
    u = u / (math.sqrt(n / bias_correction3 + eps_root) + eps)
    return x - lr * (u + weight_decay * x)


ADAN = UpdateRule(
    name="adan", class_name="Adan", defined_by="optax.adan",
    hyperparameters=(
        *moment_options(1e-3, (0.98, 0.92, 0.99), 1e-8, library="optax", of=(
            "the gradients' average", "the average of the gradients' differences",
            "the squared term's average")),
        eps_root_option(1e-8),
        Hyperparameter("weight_decay", 0.0, "decoupled weight decay, multiplied by the learning "
                       "rate (optax's weight_decay)"),
    ),
    slots=("m", "v", "n", "g"),
    coefficients=lambda o, t, lr: {"not_first": (t > 1).astype(float)},
    element=adan_element,
    summary="adaptive Nesterov momentum estimated from gradient differences (Xie et al., 2022)",
    source="Xie, Zhou, Li, Lin & Yan (2022), 'Adan: Adaptive Nesterov Momentum Algorithm for "
           "Faster Optimizing Deep Models', arXiv:2208.06677, Algorithm 1; optax.adan "
           "(scale_by_adan, add_decayed_weights, scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2, \beta_3` = optax's ``b1``, ``b2``, ``b3`` (weights of the
    *old* averages, 0.98, 0.92, 0.99, as in optax's code), :math:`\Delta_t = g_t - g_{t-1}`
    (:math:`\Delta_1 = 0`) and weight decay :math:`\lambda`:

    .. math::

        m_t &= (1-\beta_1) g_t + \beta_1 m_{t-1} \\
        v_t &= (1-\beta_2) \Delta_t + \beta_2 v_{t-1} \\
        n_t &= (1-\beta_3) \big(g_t + (1-\beta_2) \Delta_t\big)^2 + \beta_3 n_{t-1} \\
        u_t &= \frac{m_t/(1-\beta_1^t) + (1-\beta_2)\, v_t/(1-\beta_2^t)}
                    {\sqrt{n_t/(1-\beta_3^t) + \bar\epsilon} + \epsilon} \\
        x_t &= x_{t-1} - \eta_t (u_t + \lambda x_{t-1})

    The paper writes the averages with :math:`1-\beta` on the old value (its :math:`\beta_1 =
    0.02` is optax's 0.98), has no bias correction, and decays the weights proximally,
    :math:`x_t = (x_{t-1} - \eta u_t)/(1 + \lambda\eta)`; optax's arithmetic, followed here, is
    the formula above. optax requires ``learning_rate``; the default here is
    :math:`10^{-3}`.""",
)

RULES = (ADAN,)
