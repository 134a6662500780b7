"""LAMB, layer-wise adaptive moments (You et al., 2020), as optax.lamb: Adam's direction plus
weight decay, scaled by the trust ratio ``||x|| / ||u||`` of each layer (a sum over the vector,
or over each group view, inside the step)."""

import math

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, eps_root_option, moment_options

@elementwise
def _direction(x, m, v, bias_correction1, bias_correction2, eps_root, eps, weight_decay):
    # optax's scale_by_adam, then add_decayed_weights
    return (m / bias_correction1) / (math.sqrt(v / bias_correction2 + eps_root) + eps) + \
        weight_decay * x


@elementwise
def lamb_reduce(x, g, state, i, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    m = one_minus_beta1 * g + beta1 * state[0, i]
    v = one_minus_beta2 * (g * g) + beta2 * state[1, i]
    state[0, i] = m
    state[1, i] = v
    u = _direction(x, m, v, bias_correction1, bias_correction2, eps_root, eps, weight_decay)
    return (x * x, u * u)


@elementwise
def lamb_finish(sums, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    parameter_norm = math.sqrt(sums[0])
    update_norm = math.sqrt(sums[1])
    if parameter_norm == 0 or update_norm == 0:
        return (one,)  # optax: the ratio is 1 where either norm is zero
    return (parameter_norm / update_norm,)


@elementwise
def lamb_element(x, g, state, i, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one, trust_ratio) = c
    u = _direction(x, state[0, i], state[1, i], bias_correction1, bias_correction2, eps_root,
                   eps, weight_decay)
    return x - lr * (u * trust_ratio)


LAMB = UpdateRule(
    name="lamb", class_name="LAMB", defined_by="optax.lamb",
    hyperparameters=(
        *moment_options(1e-3, (0.9, 0.999), 1e-6, library="optax",
                        of=("the first moment", "the second moment"),
                        eps_doc="term added to the denominator (outside the square root)"),
        eps_root_option(0.0),
        Hyperparameter("weight_decay", 0.0, "weight decay added to the direction before the "
                       "trust ratio (optax's add_decayed_weights)"),
    ),
    slots=("mu", "nu"),
    reductions=("parameter_square", "update_square"),
    reduce=lamb_reduce,
    finish=lamb_finish,
    finished=("trust_ratio",),
    element=lamb_element,
    summary="Adam's direction with weight decay, scaled per layer by the trust ratio "
            "||x|| / ||u|| (You et al., 2020)",
    source="You et al. (2020), 'Large Batch Optimization for Deep Learning: Training BERT in "
           "76 minutes', ICLR, arXiv:1904.00962, Algorithm 2; optax.lamb (scale_by_adam, "
           "add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2` = optax's ``b1``, ``b2``, weight decay :math:`\lambda`,
    and the norms taken over one layer (optax: one leaf of the parameters; here the whole vector,
    or each view of each parameter group, :mod:`adamnb.optim.groups`):

    .. math::

        m_t &= (1-\beta_1) g_t + \beta_1 m_{t-1}, \qquad
        v_t = (1-\beta_2) g_t^2 + \beta_2 v_{t-1} \\
        u_t &= \frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t) + \epsilon_{root}}
               + \epsilon} + \lambda x_{t-1} \\
        r_t &= \frac{\lVert x_{t-1} \rVert}{\lVert u_t \rVert}
               \quad (1 \text{ if either norm is } 0) \\
        x_t &= x_{t-1} - \eta_t\, r_t u_t

    The norms are sums over the layer inside the step: a first pass updates the moments and sums
    :math:`x^2` and :math:`u^2`, a second applies the step. optax requires ``learning_rate``;
    the default here is :math:`10^{-3}`. ``mask`` is not offered (groups with
    ``weight_decay=0`` do its usual job).""",
)

RULES = (LAMB,)
