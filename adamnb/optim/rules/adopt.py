"""ADOPT (Taniguchi et al., 2024), as optax.contrib.adopt."""

import math

import numpy as np

from adamnb.backends.elements import maximum, minimum
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, moment_options


@elementwise
def adopt_element(x, g, state, i, c):
    one_minus_beta1, beta1, one_minus_beta2, beta2, eps, clip, nesterov, lr = c
    # The step is normalised by the second moment *before* this gradient enters it.
    u = g / maximum(math.sqrt(state[1, i]), eps)
    u = minimum(maximum(u, -clip), clip)  # Python's min and max, written to vectorise
    state[1, i] = one_minus_beta2 * (g * g) + beta2 * state[1, i]
    m = one_minus_beta1 * u + beta1 * state[0, i]
    state[0, i] = m
    if nesterov != 0:
        m = one_minus_beta1 * u + beta1 * m
    return x - lr * m


def _coefficients(o, t, lr):
    first = t == 1
    done = (t - 1).astype(float)
    # optax's clip_value_fn default, count ** 0.25 with count = t - 1 (0 at the first step);
    # without clipping the bound is infinite, which leaves every value as it is.
    clip = done ** 0.25 if o["use_clipping"] else np.full(t.shape, np.inf)
    return {"one_minus_beta1": np.where(first, 0.0, 1.0 - o["beta1"]),
            "beta1": np.where(first, 1.0, o["beta1"]),
            "one_minus_beta2": np.where(first, 1.0, 1.0 - o["beta2"]),
            "beta2": np.where(first, 0.0, o["beta2"]), "clip": clip}


ADOPT = UpdateRule(
    name="adopt", class_name="ADOPT", defined_by="optax.contrib.adopt",
    hyperparameters=(
        *moment_options(1e-3, (0.9, 0.9999), 1e-6, library="optax",
                        eps_doc="lower bound of the square root of the second moment"),
        Hyperparameter("nesterov", False, "use Nesterov momentum", kind="bool"),
        Hyperparameter("use_clipping", True, "clip the normalised gradient to "
                       "[-(t-1)^(1/4), (t-1)^(1/4)] (optax's default clip_value_fn)",
                       kind="bool"),
    ),
    slots=("mu", "nu"),
    coefficients=_coefficients,
    element=adopt_element,
    summary="Adam with the step normalised by the previous second moment, convergent for any "
            "beta2 (Taniguchi et al., 2024)",
    source="Taniguchi et al. (2024), NeurIPS, 'ADOPT: Modified Adam Can Converge with Any "
           "beta2 with the Optimal Rate', Algorithm 2 (clipped); optax.contrib.adopt "
           "(scale_by_adopt, scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2` = optax's ``b1``, ``b2`` and :math:`c_t = (t-1)^{1/4}`
    (optax's default ``clip_value_fn``; :math:`\infty` without ``use_clipping``). The first step
    only initialises :math:`v_1 = g_1^2` (:math:`m_1 = 0`, no move); then, for :math:`t > 1`:

    .. math::

        u_t &= \mathrm{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, -c_t, c_t\Big) \\
        v_t &= (1-\beta_2) g_t^2 + \beta_2 v_{t-1} \\
        m_t &= (1-\beta_1) u_t + \beta_1 m_{t-1} \\
        x_t &= x_{t-1} - \eta_t m_t \quad\text{or, with nesterov,}\quad
        x_t = x_{t-1} - \eta_t \big((1-\beta_1) u_t + \beta_1 m_t\big)

    optax requires ``learning_rate``; the default here, :math:`10^{-3}`, is the paper's.
    ``clip_value_fn`` is fixed to optax's default.""",
)

RULES = (ADOPT,)
