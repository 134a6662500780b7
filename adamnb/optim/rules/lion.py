"""Lion, evolved sign momentum (Chen et al., 2023), as optax.lion."""

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, beta_option, lr_option


@elementwise
def lion_element(x, g, state, i, c):
    one_minus_beta1, beta1, one_minus_beta2, beta2, weight_decay, lr, one = c
    m = state[0, i]
    interpolation = one_minus_beta1 * g + beta1 * m
    if interpolation > 0:
        sign = one
    elif interpolation < 0:
        sign = -one
    else:
        sign = interpolation  # 0, or NaN: jnp.sign's value
    state[0, i] = one_minus_beta2 * g + beta2 * m
    return x - lr * (sign + weight_decay * x)


LION = UpdateRule(
    name="lion", class_name="Lion", defined_by="optax.lion",
    hyperparameters=(
        lr_option(1e-4),
        beta_option("beta1", 0.9, "rate combining the momentum and the current gradient "
                    "(optax's b1)"),
        beta_option("beta2", 0.99, "decay rate of the momentum (optax's b2)"),
        Hyperparameter("weight_decay", 1e-3, "decoupled weight decay, multiplied by the "
                       "learning rate (optax's weight_decay)"),
    ),
    slots=("mu",),
    element=lion_element,
    summary="sign of an interpolated momentum, found by program search (Chen et al., 2023)",
    source="Chen et al. (2023), 'Symbolic Discovery of Optimization Algorithms', "
           "arXiv:2302.06675, Program 1; optax.lion (scale_by_lion, add_decayed_weights, "
           "scale_by_learning_rate)",
    doc=r"""With :math:`\beta_1, \beta_2` = optax's ``b1``, ``b2`` and weight decay :math:`\lambda`:

    .. math::

        c_t &= (1-\beta_1) g_t + \beta_1 m_{t-1} \\
        x_t &= x_{t-1} - \eta_t \left(\mathrm{sign}(c_t) + \lambda x_{t-1}\right) \\
        m_t &= (1-\beta_2) g_t + \beta_2 m_{t-1}

    optax requires ``learning_rate``; the default here, :math:`10^{-4}`, follows the paper's
    advice of a rate 3-10 times smaller than AdamW's. ``mu_dtype`` and ``mask`` are not offered
    (the momentum has x's dtype; the decay applies to every element).""",
)

RULES = (LION,)
