"""Rprop, resilient backpropagation (Riedmiller & Braun, 1993), as torch.optim.Rprop."""

from adamnb.backends.elements import maximum, minimum
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import MAXIMIZE, Hyperparameter, UpdateRule, lr_option


@elementwise
def rprop_element(x, g, state, i, c):
    maximize, first, lr, eta_minus, eta_plus, step_size_min, step_size_max = c
    if maximize != 0:
        g = -g
    # torch sets each step size to lr when the state is created, at the first step.
    step_size = lr if first != 0 else state[1, i]
    # The sign of the product, not the product of the signs: a product that underflows to 0
    # counts as 0, as in torch.
    product = g * state[0, i]
    if product > 0:
        step_size = step_size * eta_plus
    elif product < 0:
        step_size = step_size * eta_minus
        g = eta_minus - eta_minus  # torch zeroes the gradient where its sign flipped
    step_size = minimum(maximum(step_size, step_size_min), step_size_max)  # vectorises
    state[0, i] = g
    state[1, i] = step_size
    if g > 0:
        return x - step_size
    if g < 0:
        return x + step_size
    return x - g * step_size  # g is 0 (no move) or NaN (NaN, as torch's sign(NaN) gives)


def _check(o):
    if not o["step_size_min"] <= o["step_size_max"]:
        raise ValueError(f"Invalid step sizes: step_size_min={o['step_size_min']!r} must not "
                         f"exceed step_size_max={o['step_size_max']!r}")


RPROP = UpdateRule(
    name="rprop", class_name="Rprop",
    hyperparameters=(
        lr_option(1e-2),
        Hyperparameter("eta_minus", 0.5, "multiplicative decrease of a step size where the "
                       "gradient's sign flips (torch's etas[0])", low_open=True, high=1.0,
                       high_open=True),
        Hyperparameter("eta_plus", 1.2, "multiplicative increase of a step size where the "
                       "gradient keeps its sign (torch's etas[1])", low=1.0, low_open=True),
        Hyperparameter("step_size_min", 1e-6, "smallest step size (torch's step_sizes[0])"),
        Hyperparameter("step_size_max", 50.0, "largest step size (torch's step_sizes[1])"),
        MAXIMIZE,
    ),
    slots=("prev", "step_size"),
    coefficients=lambda o, t, lr: {"first": (t == 1).astype(float)},
    element=rprop_element,
    check=_check,
    summary="resilient backpropagation: per-element step sizes adapted to the gradient's sign "
            "(Riedmiller & Braun, 1993)",
    source="Riedmiller & Braun (1993), IEEE ICNN, 'A direct adaptive method for faster "
           "backpropagation learning: the RPROP algorithm'; torch.optim.Rprop",
    doc=r"""Each element keeps its previous gradient :math:`g_{t-1}` (``prev``) and its own step
    size :math:`s_t` (``step_size``, :math:`s_0 = \eta_1`, the learning rate of the first step;
    later learning rates are not used, as in torch). With :math:`\eta^-, \eta^+` = ``eta_minus``,
    ``eta_plus`` (torch's ``etas``) and :math:`s_{min}, s_{max}` = ``step_size_min``,
    ``step_size_max`` (torch's ``step_sizes``):

    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)} \\
        s_t &= \mathrm{clip}\Big(s_{t-1} \cdot \begin{cases} \eta^+ & g_t g_{t-1} > 0 \\
               \eta^- & g_t g_{t-1} < 0 \\ 1 & \text{otherwise} \end{cases},\ s_{min},
               s_{max}\Big) \\
        g_t &\leftarrow 0 \ \text{where } g_t g_{t-1} < 0 \\
        x_t &= x_{t-1} - \mathrm{sign}(g_t)\, s_t

    and :math:`g_t` (after the zeroing) is kept as the next step's :math:`g_{t-1}`. This is the
    variant without weight backtracking (Rprop-, Igel & Huesken, 2000), which torch implements.
    A schedule's rates after the first step have no effect.""",
)

RULES = (RPROP,)
