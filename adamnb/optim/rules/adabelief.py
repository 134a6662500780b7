"""AdaBelief (Zhuang et al., 2020), as optax.adabelief."""

import math

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, eps_root_option, moment_options, power


@elementwise
def adabelief_element(x, g, state, i, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, eps_root, bias_correction1,
     next_bias_correction1, bias_correction2, eps, lr, nesterov) = c
    m = one_minus_beta1 * g + beta1 * state[0, i]
    error = g - m
    s = one_minus_beta2 * (error * error) + beta2 * state[1, i]
    s = s + eps_root
    state[0, i] = m
    state[1, i] = s
    if nesterov != 0:
        m = beta1 * (m / next_bias_correction1) + one_minus_beta1 * (g / bias_correction1)
    else:
        m = m / bias_correction1
    return x - lr * (m / (math.sqrt(s / bias_correction2) + eps))


ADABELIEF = UpdateRule(
    name="adabelief", class_name="AdaBelief", defined_by="optax.adabelief",
    hyperparameters=(
        *moment_options(1e-3, (0.9, 0.999), 1e-16, library="optax", of=(
            "the first-moment estimate", "the estimate of the squared prediction error")),
        eps_root_option(1e-16, "term added to the second moment of the prediction error"),
        Hyperparameter("nesterov", False, "use Nesterov momentum", kind="bool"),
    ),
    slots=("mu", "nu"),
    coefficients=lambda o, t, lr: {"next_bias_correction1": 1.0 - power(o["beta1"], t + 1)},
    element=adabelief_element,
    summary="Adam with the second moment of the gradient's deviation from its average "
            "(Zhuang et al., 2020)",
    source="Zhuang et al. (2020), NeurIPS, 'AdaBelief Optimizer: Adapting Stepsizes by the "
           "Belief in Observed Gradients', Algorithm 2; optax.adabelief (scale_by_belief, "
           "scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2` = optax's ``b1``, ``b2``, :math:`\epsilon` = ``eps`` and
    :math:`\bar\epsilon` = ``eps_root``:

    .. math::

        m_t &= (1-\beta_1) g_t + \beta_1 m_{t-1} \\
        s_t &= (1-\beta_2) (g_t - m_t)^2 + \beta_2 s_{t-1} + \bar\epsilon \\
        \hat m_t &= m_t / (1-\beta_1^t) \quad\text{or, with nesterov,}\quad
        \hat m_t = \beta_1 \frac{m_t}{1-\beta_1^{t+1}} + (1-\beta_1) \frac{g_t}{1-\beta_1^t} \\
        x_t &= x_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    The paper's defaults are :math:`\epsilon = 10^{-8}`, :math:`\bar\epsilon = 0`; optax's (and
    these) are both :math:`10^{-16}`. optax requires ``learning_rate``; the default here,
    :math:`10^{-3}`, is the paper's.""",
)

RULES = (ADABELIEF,)
