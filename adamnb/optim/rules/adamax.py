"""AdaMax, Adam with the infinity norm (Kingma & Ba, 2014, Algorithm 2), as torch.optim.Adamax."""

from adamnb.backends.elements import maximum, torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import MAXIMIZE, WEIGHT_DECAY, UpdateRule, moment_options, power


@elementwise
def adamax_element(x, g, state, i, c):
    maximize, weight_decay, one_minus_beta1, beta2, eps, clr = c
    g = torch_gradient(x, g, maximize, weight_decay)
    m = state[0, i] + one_minus_beta1 * (g - state[0, i])
    u = maximum(beta2 * state[1, i], abs(g) + eps)
    state[0, i] = m
    state[1, i] = u
    return x - clr * (m / u)


ADAMAX = UpdateRule(
    name="adamax", class_name="Adamax",
    hyperparameters=(
        *moment_options(2e-3, (0.9, 0.999), 1e-8, of=(
            "the first-moment estimate", "the exponentially weighted infinity norm")),
        WEIGHT_DECAY,
        MAXIMIZE,
    ),
    slots=("exp_avg", "exp_inf"),
    coefficients=lambda o, t, lr: {"clr": lr / (1.0 - power(o["beta1"], t))},
    element=adamax_element,
    summary="Adam with the infinity norm (Kingma & Ba, 2014, Algorithm 2)",
    source="Kingma & Ba (2014), arXiv:1412.6980, Algorithm 2; torch.optim.Adamax",
    doc=r"""
    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)}, \qquad g_t \leftarrow g_t + \lambda x_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        u_t &= \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        x_t &= x_{t-1} - \frac{\eta_t}{1-\beta_1^t} \frac{m_t}{u_t}

    The paper's Algorithm 2 has no :math:`\epsilon`: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t|)`;
    torch (and this rule) add it inside the max so that :math:`u_t > 0`.""",
)

RULES = (ADAMAX,)
