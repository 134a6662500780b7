"""NAdam, Adam with Nesterov momentum (Dozat, 2016), as torch.optim.NAdam."""

import math

import numpy as np

from adamnb.backends.elements import adam_moments, torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (DECOUPLED_WEIGHT_DECAY, MAXIMIZE, WEIGHT_DECAY, Hyperparameter,
                                UpdateRule, moment_options, weight_decay_scalars)


@elementwise
def nadam_element(x, g, state, i, c):
    (maximize, weight_decay, decay_factor, one_minus_beta1, beta2, one_minus_beta2,
     bias_correction2, eps, gradient_step, momentum_step) = c
    x = x * decay_factor  # decoupled decay; exactly x (factor 1) otherwise
    g = torch_gradient(x, g, maximize, weight_decay)  # L2; exactly g (weight_decay 0) if decoupled
    m, v = adam_moments(g, state, i, one_minus_beta1, beta2, one_minus_beta2)
    denominator = math.sqrt(v / bias_correction2) + eps
    x = x - gradient_step * (g / denominator)
    return x - momentum_step * (m / denominator)


def nadam_momentum(o, t):
    """Dozat's momentum schedule: mu_t = beta1 (1 - 0.5 * 0.96 ** (t * momentum_decay))."""
    return o["beta1"] * (1.0 - 0.5 * 0.96 ** (t * o["momentum_decay"]))


def _mu_products(o, t, lr, scalars):
    # Multiplied one step at a time (cumprod is sequential), as a per-step loop would.
    products = np.cumprod(np.concatenate(([scalars["mu_product"]], nadam_momentum(o, t))))[1:]
    return {"mu_product": products}, {"mu_product": float(products[-1])}


def _coefficients(o, t, lr, mu_product):
    mu, mu_next = nadam_momentum(o, t), nadam_momentum(o, t + 1)
    return {**weight_decay_scalars(o, lr, o["decoupled_weight_decay"]),
            "gradient_step": lr * (1.0 - mu) / (1.0 - mu_product),
            "momentum_step": lr * mu_next / (1.0 - mu_product * mu_next)}


NADAM = UpdateRule(
    name="nadam", class_name="NAdam",
    hyperparameters=(
        *moment_options(2e-3, (0.9, 0.999), 1e-8),
        WEIGHT_DECAY,
        Hyperparameter("momentum_decay", 4e-3, "psi in Dozat's momentum schedule"),
        DECOUPLED_WEIGHT_DECAY,
        MAXIMIZE,
    ),
    slots=("exp_avg", "exp_avg_sq"),
    coefficients=_coefficients,
    element=nadam_element,
    # The product mu_1 ... mu_t, a float64 host scalar saved with the state. torch keeps it in a
    # float32 scalar tensor; the two differ by at most float32 rounding of that one scalar.
    scalar_state={"mu_product": 1.0},
    scalar_series=_mu_products,
    summary="Adam with Nesterov momentum (Dozat, 2016)",
    source="Dozat (2016), ICLR workshop, 'Incorporating Nesterov Momentum into Adam'; "
           "torch.optim.NAdam",
    doc=r"""With :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`, :math:`\psi` =
    ``momentum_decay``:

    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)} \\
        g_t &\leftarrow g_t + \lambda x_{t-1} \quad\text{or, with decoupled\_weight\_decay,}\quad
        x_{t-1} \leftarrow (1 - \eta_t\lambda)\, x_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
        x_t &= x_{t-1} - \eta_t \frac{1-\mu_t}{1-\prod_{i\le t}\mu_i} \frac{g_t}{d_t}
                       - \eta_t \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i} \frac{m_t}{d_t}""",
)

RULES = (NADAM,)
