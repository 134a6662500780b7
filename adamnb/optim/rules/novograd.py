"""NovoGrad (Ginsburg et al., 2019), as optax.novograd: Adam's first moment of gradients
normalised per layer by a running average of the layer's squared gradient norm (one scalar
second moment per layer, carried from step to step, instead of one per parameter)."""

import math

from adamnb.backends.jit import elementwise
from adamnb.optim._rule import Hyperparameter, UpdateRule, eps_root_option, moment_options


@elementwise
def novograd_reduce(x, g, state, i, carry, c):
    (first, one_minus_beta2, beta2, beta1, eps_root, eps, weight_decay, lr) = c
    return (g * g,)


@elementwise
def _second_moment(sums, carry, first, one_minus_beta2, beta2):
    # optax's nu_addition is jnp.linalg.norm(g) ** 2: the square of the rounded norm, which may
    # differ from the sum of squares in its last bit.
    norm = math.sqrt(sums[0])
    square = norm * norm
    if first != 0:
        return square  # optax's init_nu: the first squared norm, not (1 - b2) times it
    return one_minus_beta2 * square + beta2 * carry[0]


@elementwise
def novograd_finish(sums, carry, c):
    (first, one_minus_beta2, beta2, beta1, eps_root, eps, weight_decay, lr) = c
    nu = _second_moment(sums, carry, first, one_minus_beta2, beta2)
    return (math.sqrt(nu + eps_root) + eps,)


@elementwise
def novograd_advance(sums, carry, c):
    (first, one_minus_beta2, beta2, beta1, eps_root, eps, weight_decay, lr) = c
    return (_second_moment(sums, carry, first, one_minus_beta2, beta2),)


@elementwise
def novograd_element(x, g, state, i, c):
    (first, one_minus_beta2, beta2, beta1, eps_root, eps, weight_decay, lr, denominator) = c
    # optax: mu_addition, then b1 * mu + it (at step 1 mu is 0, so this is init_mu's value)
    m = beta1 * state[0, i] + (g / denominator + weight_decay * x)
    state[0, i] = m
    return x - lr * m


NOVOGRAD = UpdateRule(
    name="novograd", class_name="NovoGrad", defined_by="optax.novograd",
    hyperparameters=(
        *moment_options(1e-3, (0.9, 0.25), 1e-6, library="optax",
                        of=("the first moment", "the layer's squared gradient norm"),
                        eps_doc="term added to the denominator (outside the square root)"),
        eps_root_option(0.0, "term added to the squared gradient norm inside the square root"),
        Hyperparameter("weight_decay", 0.0, "weight decay added to the normalised gradient "
                       "before the first moment"),
    ),
    slots=("mu",),
    coefficients=lambda o, t, lr: {"first": (t == 1).astype(float)},
    reductions=("gradient_square",),
    reduce=novograd_reduce,
    finish=novograd_finish,
    finished=("denominator",),
    carried=("nu",),
    initial_carry=lambda o: {"nu": 0.0},
    advance=novograd_advance,
    element=novograd_element,
    summary="Adam's first moment of gradients normalised by a per-layer running average of the "
            "squared gradient norm (Ginsburg et al., 2019)",
    source="Ginsburg et al. (2019), 'Stochastic Gradient Methods with Layer-wise Adaptive "
           "Moments for Training of Deep Networks', arXiv:1905.11286, Algorithm 1; "
           "optax.novograd (scale_by_novograd, scale_by_learning_rate)",
    doc=r"""Per layer :math:`\ell` (a leaf of optax's parameters; here the whole vector, or each
    view of each parameter group, see :mod:`adamnb.optim.groups`), with optax's ``b1``, ``b2`` as
    :math:`\beta_1, \beta_2` and weight decay :math:`\lambda`, and :math:`g_t` the layer's
    gradient:

    .. math::

        \nu_t &= \begin{cases} \lVert g_1 \rVert^2 & t = 1 \\
                 \beta_2 \nu_{t-1} + (1-\beta_2) \lVert g_t \rVert^2 & t > 1 \end{cases} \\
        m_t &= \beta_1 m_{t-1} + \frac{g_t}{\sqrt{\nu_t + \epsilon_{root}} + \epsilon}
               + \lambda x_{t-1}, \qquad m_0 = 0 \\
        x_t &= x_{t-1} - \eta_t m_t

    The squared norm is a sum over the layer inside the step (a first pass), and
    :math:`\nu` one scalar per layer carried from step to step in x's dtype, as optax keeps it in
    the parameters' dtype. optax requires ``learning_rate``; the default here is
    :math:`10^{-3}`.""",
)

RULES = (NOVOGRAD,)
