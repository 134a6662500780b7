"""AdEMAMix, Adam with a mixture of a fast and a slow momentum (Pagliardini et al., 2024), as
optax.contrib.ademamix, with the paper's warm-ups of alpha and beta3 as per-step scalars."""

import math

import numpy as np

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (Hyperparameter, UpdateRule, eps_option, eps_root_option,
                                moment_options)


@elementwise
def ademamix_element(x, g, state, i, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, one_minus_beta3, beta3, alpha,
     bias_correction1, bias_correction2, eps_root, eps, weight_decay, lr) = c
    fast = one_minus_beta1 * g + beta1 * state[0, i]
    slow = one_minus_beta3 * g + beta3 * state[1, i]
    nu = one_minus_beta2 * (g * g) + beta2 * state[2, i]
    state[0, i] = fast
    state[1, i] = slow
    state[2, i] = nu
    u = (fast / bias_correction1 + alpha * slow) / (
        math.sqrt(nu / bias_correction2 + eps_root) + eps)
    return x - lr * (u + weight_decay * x)


def alpha_schedule(o, t):
    """alpha at step t: the paper's linear warm-up from 0 over ``alpha_warmup`` steps, evaluated,
    as optax evaluates a schedule, at the count of steps done before (t - 1)."""
    alpha, warmup = o["alpha"], o["alpha_warmup"]
    done = (np.asarray(t) - 1).astype(float)
    if warmup == 0:
        return np.full(done.shape, alpha)
    return np.where(done < warmup, (done / warmup) * alpha, alpha)


def beta3_schedule(o, t):
    """beta3 at step t: the paper's warm-up from beta1 to beta3 over ``beta3_warmup`` steps,
    linear in the half-life ln(1/2)/ln(beta) - 1, at the count of steps done before (t - 1)."""
    beta1, beta3, warmup = o["beta1"], o["beta3"], o["beta3_warmup"]
    done = (np.asarray(t) - 1).astype(float)
    if warmup == 0:
        return np.full(done.shape, beta3)
    with np.errstate(divide="ignore"):  # beta1 = 0: a half-life of 0 steps, exactly
        start, end = math.log(0.5) / np.log(beta1) - 1.0, math.log(0.5) / math.log(beta3) - 1.0
        a = done / warmup
        warming = 0.5 ** (1.0 / ((1.0 - a) * start + a * end + 1.0))
    return np.where(done < warmup, warming, beta3)


def _coefficients(o, t, lr):
    beta3 = beta3_schedule(o, t)
    # beta3 and alpha follow their warm-ups (the standard scalars would be their final values)
    return {"one_minus_beta3": 1.0 - beta3, "beta3": beta3, "alpha": alpha_schedule(o, t)}


ADEMAMIX = UpdateRule(
    name="ademamix", class_name="AdEMAMix", defined_by="optax.contrib.ademamix",
    hyperparameters=(
        *moment_options(1e-3, (0.9, 0.999, 0.9999), library="optax", of=(
            "the fast momentum", "the second-moment estimate", "the slow momentum")),
        Hyperparameter("alpha", 5.0, "weight of the slow momentum in the mixture"),
        eps_option(1e-8),
        eps_root_option(0.0),
        Hyperparameter("weight_decay", 0.0, "decoupled weight decay, multiplied by the learning "
                       "rate (optax's weight_decay)"),
        Hyperparameter("alpha_warmup", 0, "steps of the paper's linear warm-up of alpha from 0 "
                       "(T_alpha; 0: none)", kind="int"),
        Hyperparameter("beta3_warmup", 0, "steps of the paper's warm-up of beta3 from beta1 "
                       "(T_beta3; 0: none)", kind="int"),
    ),
    slots=("m1", "m2", "nu"),
    coefficients=_coefficients,
    element=ademamix_element,
    summary="Adam with a mixture of a fast and a slow momentum (Pagliardini et al., 2024)",
    source="Pagliardini, Ablin & Grangier (2024), 'The AdEMAMix Optimizer: Better, Faster, "
           "Older', arXiv:2409.03137, Algorithm 1 and its alpha and beta3 schedulers; "
           "optax.contrib.ademamix (scale_by_ademamix, add_decayed_weights, "
           "scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2, \beta_3` = optax's ``b1``, ``b2``, ``b3`` and weight
    decay :math:`\lambda`:

    .. math::

        m^{(1)}_t &= (1-\beta_1) g_t + \beta_1 m^{(1)}_{t-1}, \qquad
        m^{(2)}_t = (1-\beta_{3,t}) g_t + \beta_{3,t} m^{(2)}_{t-1} \\
        \nu_t &= (1-\beta_2) g_t^2 + \beta_2 \nu_{t-1} \\
        x_t &= x_{t-1} - \eta_t \left(\frac{m^{(1)}_t / (1-\beta_1^t) + \alpha_t m^{(2)}_t}
               {\sqrt{\nu_t / (1-\beta_2^t) + \bar\epsilon} + \epsilon} + \lambda x_{t-1}\right)

    The slow momentum is not bias-corrected. :math:`\alpha_t` and :math:`\beta_{3,t}` are the
    paper's schedulers, which optax takes as callables of the step count :math:`k = t - 1`:
    :math:`\alpha_t = \alpha \min(1, k/T_\alpha)` and, with :math:`f(\beta) = \ln(1/2)/\ln\beta
    - 1` (the half-life) and :math:`a = k/T_{\beta_3}`, :math:`\beta_{3,t} =
    f^{-1}\big((1-a) f(\beta_1) + a f(\beta_3)\big)` while :math:`k < T_{\beta_3}`, then
    :math:`\beta_3`; :math:`T_\alpha` = ``alpha_warmup``, :math:`T_{\beta_3}` =
    ``beta3_warmup`` (0, the default, is no warm-up: optax's constant ``alpha`` and ``b3``).
    optax requires ``learning_rate``; the default here is :math:`10^{-3}`.""",
)

RULES = (ADEMAMIX,)
