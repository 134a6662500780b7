"""Prodigy (Mishchenko & Defazio, 2023), as optax.contrib.prodigy: AdamW whose learning rate is
scaled by an estimate of the distance to the solution, from sums over all the parameters."""

import math

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, beta_option, eps_option, lr_option, power


@elementwise
def prodigy_reduce(x, g, state, i, carry, c):
    (first, one_minus_beta1, beta1, one_minus_beta2, beta2, beta3, lr, bias_correction,
     estim_lr0, estim_lr_coef, eps, minus_weight_decay, safeguard_warmup) = c
    estim_lr = carry[0]
    # params0, optax's initial point, set at step 1. Loaded and stored at every step (its own
    # value after step 1): the choice is then a select, not a branch around a load and a store,
    # which kept the first pass's loop from vectorising (twice its time)
    saved = state[3, i]
    params0 = x if first != 0 else saved
    state[3, i] = params0
    dg = estim_lr * g
    m = beta1 * state[0, i] + one_minus_beta1 * dg
    v = beta2 * state[1, i] + one_minus_beta2 * dg * dg
    if safeguard_warmup != 0:
        s = beta3 * state[2, i] + estim_lr * dg / estim_lr0
    else:
        s = beta3 * state[2, i] + (estim_lr * lr * bias_correction) * dg / estim_lr0
    state[0, i] = m
    state[1, i] = v
    state[2, i] = s
    return (g * (params0 - x), abs(s))


@elementwise
def _estimates(sums, carry, beta3, lr, bias_correction, estim_lr0, estim_lr_coef):
    """(the step's d lr, the new weighted numerator, the new estimate of d)"""
    estim_lr, numerator_weighted = carry[0], carry[1]
    dlr = estim_lr * lr * bias_correction
    numerator_weighted = beta3 * numerator_weighted + (estim_lr / estim_lr0) * dlr * sums[0]
    estimate = estim_lr_coef * numerator_weighted / sums[1]
    if not estimate <= estim_lr:  # jnp.maximum: a NaN estimate propagates
        estim_lr = estimate
    return dlr, numerator_weighted, estim_lr


@elementwise
def prodigy_finish(sums, carry, c):
    (first, one_minus_beta1, beta1, one_minus_beta2, beta2, beta3, lr, bias_correction,
     estim_lr0, estim_lr_coef, eps, minus_weight_decay, safeguard_warmup) = c
    dlr, numerator_weighted, estim_lr = _estimates(sums, carry, beta3, lr, bias_correction,
                                                   estim_lr0, estim_lr_coef)
    return (dlr, estim_lr * eps)


@elementwise
def prodigy_advance(sums, carry, c):
    (first, one_minus_beta1, beta1, one_minus_beta2, beta2, beta3, lr, bias_correction,
     estim_lr0, estim_lr_coef, eps, minus_weight_decay, safeguard_warmup) = c
    dlr, numerator_weighted, estim_lr = _estimates(sums, carry, beta3, lr, bias_correction,
                                                   estim_lr0, estim_lr_coef)
    return (estim_lr, numerator_weighted)


@elementwise
def prodigy_element(x, g, state, i, c):
    (first, one_minus_beta1, beta1, one_minus_beta2, beta2, beta3, lr, bias_correction,
     estim_lr0, estim_lr_coef, eps, minus_weight_decay, safeguard_warmup, dlr, estim_lr_eps) = c
    return x + (minus_weight_decay * dlr * x
                - dlr * state[0, i] / (math.sqrt(state[1, i]) + estim_lr_eps))


def _coefficients(o, t, lr):
    beta1, beta2 = o["beta1"], o["beta2"]
    return {"first": (t == 1).astype(float),
            "beta3": beta2 ** 0.5 if o["beta3"] is None else o["beta3"],
            "bias_correction": (1.0 - power(beta2, t)) ** 0.5 / (1.0 - power(beta1, t)),
            "minus_weight_decay": -o["weight_decay"]}


PRODIGY = UpdateRule(
    name="prodigy", class_name="Prodigy", defined_by="optax.contrib.prodigy",
    hyperparameters=(
        lr_option(1.0),
        beta_option("beta1", 0.9, "decay rate of the first moment (optax's betas[0])"),
        beta_option("beta2", 0.999, "decay rate of the second moment (optax's betas[1])"),
        Hyperparameter("beta3", None, "decay rate of the sums that estimate d; None: "
                       "sqrt(beta2)", high=1.0, high_open=True, none_ok=True),
        eps_option(1e-8, "term added to the denominator, multiplied by the estimate of d"),
        Hyperparameter("estim_lr0", 1e-6, "initial (under-)estimate d_0 of the distance to the "
                       "solution", low_open=True),
        Hyperparameter("estim_lr_coef", 1.0, "coefficient of each new estimate of d"),
        Hyperparameter("weight_decay", 0.0, "AdamW-style decoupled weight decay"),
        Hyperparameter("safeguard_warmup", False, "leave the learning rate out of the sums "
                       "that estimate d (for warm-ups)", kind="bool"),
    ),
    slots=("exp_avg", "exp_avg_sq", "grad_sum", "params0"),
    coefficients=_coefficients,
    reductions=("numerator", "denominator"),
    reduce=prodigy_reduce,
    finish=prodigy_finish,
    finished=("dlr", "estim_lr_eps"),
    carried=("estim_lr", "numerator_weighted"),
    initial_carry=lambda o: {"estim_lr": o["estim_lr0"], "numerator_weighted": 0.0},
    advance=prodigy_advance,
    element=prodigy_element,
    whole_vector=True,
    summary="AdamW with the learning rate scaled by an online estimate of the distance to the "
            "solution (Mishchenko & Defazio, 2023)",
    source="Mishchenko & Defazio (2023), 'Prodigy: An Expeditiously Adaptive Parameter-Free "
           "Learner', arXiv:2306.06101, Algorithm 4; optax.contrib.prodigy",
    doc=r"""With :math:`\beta_1, \beta_2` = optax's ``betas``, :math:`\beta_3` (default
    :math:`\sqrt{\beta_2}`), :math:`d_0` = ``estim_lr0``, :math:`c` = ``estim_lr_coef``, weight
    decay :math:`\lambda`, the estimate :math:`d_{t-1}` of the distance to the solution, and
    :math:`\hat\eta_t = d_{t-1} \eta_t \sqrt{1-\beta_2^t} / (1-\beta_1^t)`:

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) d_{t-1} g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) d_{t-1}^2 g_t^2 \\
        s_t &= \beta_3 s_{t-1} + \hat\eta_t d_{t-1} g_t / d_0
              \quad (\text{safeguard\_warmup: } d_{t-1}^2 g_t / d_0) \\
        r_t &= \beta_3 r_{t-1} + \frac{d_{t-1}}{d_0}\, \hat\eta_t\,
              \langle g_t, x_0 - x_{t-1} \rangle, \qquad
        d_t = \max\!\left(d_{t-1}, \frac{c\, r_t}{\lVert s_t \rVert_1}\right) \\
        x_t &= x_{t-1} - \lambda \hat\eta_t x_{t-1}
              - \frac{\hat\eta_t m_t}{\sqrt{v_t} + d_t \epsilon}

    The inner product and the 1-norm are sums over every parameter inside the step, so Prodigy
    runs without parameter groups (optax sums over the whole parameter tree); :math:`d_t` and
    :math:`r_t` are carried from step to step in x's dtype, as optax keeps them in the
    parameters' dtype (``estim_lr``, ``numerator_weighted`` in the state dict's scalars).""",
)

RULES = (PRODIGY,)
