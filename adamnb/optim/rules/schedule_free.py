"""Schedule-free AdamW (Defazio et al., 2024), as optax.contrib.schedule_free_adamw."""

import math

import numpy as np

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, beta_option, eps_option, lr_option


@elementwise
def schedule_free_adamw_element(x, g, state, i, c):
    (first, one_minus_beta2, beta2, bias_correction2, eps, one, weight_decay, lr, ck,
     one_minus_ck, beta1, one_minus_beta1) = c
    # x is optax's params, the point y_t the gradient is taken at; z starts at y_0.
    z_previous = x if first != 0 else state[0, i]
    nu = one_minus_beta2 * (g * g) + beta2 * state[1, i]
    state[1, i] = nu
    u = (one / (math.sqrt(nu / bias_correction2) + eps)) * g  # scale_by_rms, b1 = 0 Adam
    z = z_previous - lr * (u + weight_decay * x)
    state[0, i] = z
    average = (x - one_minus_beta1 * z_previous) / beta1  # x_{t-1}, recomputed from y and z
    average = one_minus_ck * average + ck * z
    return x + ((beta1 * average + one_minus_beta1 * z) - x)


def _warmup(o, count):
    """optax's warmup_constant_schedule(0, 1, warmup_steps) at ``count``: a factor of lr."""
    warmup = o["warmup_steps"]
    if warmup == 0:
        return np.ones(count.shape)
    return np.where(count < warmup, (0.0 - 1.0) * (1.0 - count / warmup) + 1.0, 1.0)


def _averaging_weights(o, t, lr, scalars):
    # optax evaluates the warm-up at count t - 1 for the step, at t for the averaging weight.
    done = (t - 1).astype(float)
    step_lr = lr * _warmup(o, done)
    weight_lr = lr * _warmup(o, done + 1.0)
    max_lr = np.maximum.accumulate(np.concatenate(([scalars["max_lr"]], weight_lr)))[1:]
    weight = max_lr ** o["weight_lr_power"]
    # Summed one step at a time, as optax's state does (cumsum is sequential).
    weight_sum = np.cumsum(np.concatenate(([scalars["weight_sum"]], weight)))[1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ck = np.nan_to_num(weight / weight_sum, nan=0.0, posinf=np.inf)
    ck = np.where(np.isnan(weight) | np.isnan(weight_sum), np.nan, ck)
    return ({"step_lr": step_lr, "ck": ck},
            {"max_lr": float(max_lr[-1]), "weight_sum": float(weight_sum[-1])})


def _coefficients(o, t, lr, step_lr, ck):
    # lr: the warmed-up rate of this step (scalar_series), not the schedule's
    return {"first": (t == 1).astype(float), "lr": step_lr, "ck": ck, "one_minus_ck": 1.0 - ck}


def evaluation_point(o, y, z):
    """optax's schedule_free_eval_params: x = (y - (1 - beta1) z) / beta1, in y's dtype."""
    beta1 = y.dtype.type(o["beta1"])
    return (y - y.dtype.type(1.0 - o["beta1"]) * z) / beta1


def _outputs(o, x, state):
    z = state[..., 0, :].copy()
    return {"x": evaluation_point(o, x, z), "y": x.copy(), "z": z}


SCHEDULE_FREE_ADAMW = UpdateRule(
    name="schedule_free_adamw", class_name="ScheduleFreeAdamW",
    defined_by="optax.contrib.schedule_free_adamw",
    hyperparameters=(
        lr_option(0.0025),
        Hyperparameter("warmup_steps", 0, "steps of optax's linear warm-up of the learning rate "
                       "from 0 (0: none, optax's None)", kind="int"),
        Hyperparameter("beta1", 0.9, "interpolation between the average and z (optax's b1)",
                       low_open=True, high=1.0),
        beta_option("beta2", 0.999, "decay rate of the second-moment estimate (optax's b2)"),
        eps_option(1e-8),
        Hyperparameter("weight_decay", 0.0, "weight decay, multiplied by the learning rate, "
                       "at the gradient's point y"),
        Hyperparameter("weight_lr_power", 2.0, "the averaging weight of step t is "
                       "max_{s<=t} lr_s ** weight_lr_power"),
    ),
    slots=("z", "nu"),
    coefficients=_coefficients,
    element=schedule_free_adamw_element,
    scalar_state={"max_lr": 0.0, "weight_sum": 0.0},
    scalar_series=_averaging_weights,
    outputs=_outputs,
    summary="AdamW without momentum whose iterates are averaged online, needing no learning-rate "
            "schedule (Defazio et al., 2024)",
    source="Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky (2024), NeurIPS, 'The Road "
           "Less Scheduled', arXiv:2405.15682, Algorithm 1; optax.contrib.schedule_free_adamw "
           "(schedule_free over scale_by_rms, add_decayed_weights, scale_by_learning_rate)",
    doc=r"""Three sequences: :math:`y_t`, where the gradient is taken (the iterate the drivers and
    :meth:`step` update, optax's ``params``); :math:`z_t`, an AdamW sequence without momentum
    (state slot ``z``, :math:`z_0 = y_0`); and their average :math:`x_t`, the point to evaluate
    (optax's ``schedule_free_eval_params``). With :math:`\beta_1, \beta_2` = optax's ``b1``,
    ``b2``, weight decay :math:`\lambda`, :math:`p` = ``weight_lr_power``:

    .. math::

        v_t &= (1-\beta_2) g_t^2 + \beta_2 v_{t-1}, \qquad
        z_t = z_{t-1} - \gamma_t \left(\frac{g_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
              + \lambda y_{t-1}\right) \\
        c_t &= \frac{w_t}{\sum_{s \le t} w_s}, \qquad w_t = \big(\max_{s \le t} \gamma'_s\big)^p
        \\
        x_t &= (1 - c_t)\, x_{t-1} + c_t z_t, \qquad
        x_{t-1} = \frac{y_{t-1} - (1-\beta_1) z_{t-1}}{\beta_1} \\
        y_t &= \beta_1 x_t + (1-\beta_1) z_t

    :math:`\gamma_t` is the step's learning rate and :math:`\gamma'_t` the averaging weight's:
    both :math:`\eta_t` (``lr``) times optax's warm-up factor ``min(k / warmup_steps, 1)``, at
    :math:`k = t-1` for the step and :math:`k = t` for the weight, as in optax. optax calls a
    callable ``learning_rate`` at both counts; a schedule ``lr(t)`` here gives both the same
    :math:`\eta_t` (never calling it for a step ahead), so with a varying ``lr`` the averaging
    weights differ from optax's. :func:`adamnb.minimize` reports :math:`x_t` as ``res.x``,
    with ``fun`` and ``jac`` evaluated there (one more evaluation, counted in ``nfev`` and
    ``njev``; the status is decided at :math:`y_t`, where the steps' gradients are taken), and
    ``res.y`` and ``res.z``; :meth:`outputs` gives the same from an optimizer.""",
)

RULES = (SCHEDULE_FREE_ADAMW,)
