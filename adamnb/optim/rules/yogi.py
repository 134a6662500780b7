"""Yogi (Zaheer et al., 2018), as optax.yogi."""

import math

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, moment_options


@elementwise
def yogi_element(x, g, state, i, c):
    one_minus_beta1, beta1, one_minus_beta2, bias_correction1, bias_correction2, eps, lr = c
    m = one_minus_beta1 * g + beta1 * state[0, i]
    square = g * g
    v = state[1, i]
    # v - (1-beta2) sign(v - g^2) g^2: the second moment moves by at most (1-beta2) g^2.
    if v - square > 0:
        v = v - one_minus_beta2 * square
    elif v - square < 0:
        v = v + one_minus_beta2 * square
    state[0, i] = m
    state[1, i] = v
    return x - lr * ((m / bias_correction1) / (math.sqrt(v / bias_correction2) + eps))


YOGI = UpdateRule(
    name="yogi", class_name="Yogi", defined_by="optax.yogi",
    hyperparameters=(
        *moment_options(1e-2, (0.9, 0.999), 1e-3, library="optax", of=(
            "the first-moment estimate", "the additive second-moment update")),
        Hyperparameter("initial_accumulator_value", 1e-6, "initial value of both moments "
                       "(optax's scale_by_yogi)"),
    ),
    slots=("mu", "nu"),
    element=yogi_element,
    initial_state=lambda o, slot: o["initial_accumulator_value"],
    summary="Adam whose second moment moves additively, by at most (1-beta2) g^2 a step "
            "(Zaheer et al., 2018)",
    source="Zaheer, Reddi, Sachan, Kale & Kumar (2018), NeurIPS, 'Adaptive Methods for "
           "Nonconvex Optimization', Algorithm 2; optax.yogi (scale_by_yogi, "
           "scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2` = optax's ``b1``, ``b2`` and both moments starting at
    ``initial_accumulator_value`` (:math:`10^{-6}`, optax's):

    .. math::

        m_t &= (1-\beta_1) g_t + \beta_1 m_{t-1} \\
        v_t &= v_{t-1} - (1-\beta_2)\, \mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2 \\
        x_t &= x_{t-1} - \eta_t \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

    The paper has no bias correction and starts from :math:`v_0 = 0`; optax (and this rule)
    correct both moments, as Adam does. optax requires ``learning_rate``; the default here,
    :math:`10^{-2}`, is the paper's.""",
)

RULES = (YOGI,)
