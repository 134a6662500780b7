"""RAdam, rectified Adam (Liu et al., 2020), as torch.optim.RAdam."""

import math

import numpy as np

from adamnb.backends.elements import adam_moments, torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (DECOUPLED_WEIGHT_DECAY, MAXIMIZE, WEIGHT_DECAY, UpdateRule,
                                moment_options, power, weight_decay_scalars)


@elementwise
def radam_element(x, g, state, i, c):
    (maximize, weight_decay, decay_factor, one_minus_beta1, beta2, one_minus_beta2,
     bias_correction1, lr, rectified, rectification, bias_correction2_sqrt, eps) = c
    x = x * decay_factor  # decoupled decay; exactly x (factor 1) otherwise
    g = torch_gradient(x, g, maximize, weight_decay)  # L2; exactly g (weight_decay 0) if decoupled
    m, v = adam_moments(g, state, i, one_minus_beta1, beta2, one_minus_beta2)
    corrected_m = m / bias_correction1
    if rectified != 0:
        adaptive_lr = bias_correction2_sqrt / (math.sqrt(v) + eps)
        return x - corrected_m * lr * adaptive_lr * rectification
    return x - corrected_m * lr


def radam_rho(o, t):
    """Length of the approximated simple moving average, rho_t (Liu et al., 2020)."""
    beta2 = o["beta2"]
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):  # beta2 = 0 gives 0/0 at no rectified t
        return rho_inf, rho_inf - 2.0 * t * power(beta2, t) / (1.0 - power(beta2, t))


def _coefficients(o, t, lr):
    rho_inf, rho_t = radam_rho(o, t)
    rectified = rho_t > 5.0
    # Only the rectified steps use r_t; elsewhere its radicand may be negative, so it is masked.
    radicand = np.where(rectified, (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t), 0.0)
    return {**weight_decay_scalars(o, lr, o["decoupled_weight_decay"]),
            "rectified": rectified.astype(float),
            "rectification": np.sqrt(np.maximum(radicand, 0.0)),
            "bias_correction2_sqrt": np.sqrt(1.0 - power(o["beta2"], t))}


RADAM = UpdateRule(
    name="radam", class_name="RAdam",
    hyperparameters=(
        *moment_options(1e-3, (0.9, 0.999), 1e-8),
        WEIGHT_DECAY,
        DECOUPLED_WEIGHT_DECAY,
        MAXIMIZE,
    ),
    slots=("exp_avg", "exp_avg_sq"),
    coefficients=_coefficients,
    element=radam_element,
    summary="Adam with the variance of the adaptive step rectified (Liu et al., 2020)",
    source="Liu et al. (2020), ICLR, 'On the Variance of the Adaptive Learning Rate and Beyond'; "
           "torch.optim.RAdam",
    doc=r"""With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1-\beta_2^t)`:

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad \hat m_t = m_t / (1-\beta_1^t) \\
        x_t &= x_{t-1} - \eta_t \hat m_t\, r_t \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}
        \ \text{if } \rho_t > 5, \quad\text{else}\quad x_t = x_{t-1} - \eta_t \hat m_t \\
        r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    (after :math:`g_t \leftarrow -g_t` with ``maximize``, then
    :math:`g_t \leftarrow g_t + \lambda x_{t-1}`, or with ``decoupled_weight_decay``
    :math:`x_{t-1} \leftarrow (1 - \eta_t \lambda)\, x_{t-1}`, as torch 2.x).""",
)

RULES = (RADAM,)
