"""Adafactor (Shazeer & Stern, 2018), as torch.optim.Adafactor: on a vector (torch's 1-D tensor)
a second moment with a step-dependent decay and the update clipped by its RMS (sums over the
vector, or over each group view, inside the step); on a group view with a 2-D shape, torch's
factored second moments (row and column means)."""

import math

import numpy as np

from adamnb.backends.elements import lerp, maximum
from adamnb.backends.jit import elementwise
from adamnb.optim import matrix
from adamnb.optim._rule import MAXIMIZE, Hyperparameter, MatrixStep, UpdateRule, lr_option


@elementwise
def adafactor_reduce(x, g, state, i, carry, c):
    (maximize, weight, one_minus_weight, weight_small, eps1, eps1_square, eps2, rho, clip,
     decay_factor, one) = c
    if maximize != 0:
        g = -g
    variance = lerp(state[0, i], g * g, weight, one_minus_weight, weight_small)
    state[0, i] = variance
    u = (one / math.sqrt(maximum(variance, eps1_square))) * g  # Python's max, vectorisable
    return (x * x, u * u)


@elementwise
def adafactor_finish(sums, carry, c):
    (maximize, weight, one_minus_weight, weight_small, eps1, eps1_square, eps2, rho, clip,
     decay_factor, one) = c
    root_size = math.sqrt(sums[2])  # sums[2]: the number of elements
    alpha = max(eps2, math.sqrt(sums[0]) / root_size) * rho
    denominator = max(one, math.sqrt(sums[1]) / (root_size * clip))
    return (alpha / denominator,)


@elementwise
def adafactor_element(x, g, state, i, c):
    (maximize, weight, one_minus_weight, weight_small, eps1, eps1_square, eps2, rho, clip,
     decay_factor, one, step) = c
    if maximize != 0:
        g = -g
    u = (one / math.sqrt(maximum(state[0, i], eps1_square))) * g
    return x * decay_factor - step * u


def factored_step(X, G, state, v, options, ops):
    """torch's Adafactor on a 2-D tensor (``_single_tensor_adafactor``, ``grad.dim() > 1``), on
    the matrix view ``X`` of a group view (host or device arrays, with the matching ``ops``,
    :class:`adamnb.optim.matrix.MatrixOps`); ``state`` is (row_var, col_var)."""
    row_var, col_var = state
    dtype = X.dtype.type
    rows, cols = X.shape
    root_size = math.sqrt(rows * cols)
    alpha = max(float(v["eps2"]), math.sqrt(ops.sum_of_squares(X)) / root_size) * float(v["rho"])
    weights = (dtype(v["weight"]), dtype(v["one_minus_weight"]), bool(v["weight_small"]))
    ops.loop(matrix.factored_second_moment, (rows,), row_var, G, True, dtype(cols), *weights)
    ops.loop(matrix.factored_second_moment, (cols,), col_var, G, False, dtype(rows), *weights)
    mean = dtype(ops.total(row_var)) / dtype(rows)
    update = ops.scratch("update", (rows, cols), X.dtype)
    ops.loop(matrix.factored_update, (rows, cols), update, G, row_var, col_var,
             max(mean, dtype(v["eps1"])), dtype(v["eps1_square"]), dtype(v["one"]),
             bool(v["maximize"]))
    denominator = max(1.0, math.sqrt(ops.sum_of_squares(update)) / (root_size * float(v["clip"])))
    ops.loop(matrix.decay_add, (rows, cols), X, dtype(v["decay_factor"]),
             dtype(-alpha / denominator), update, False)


def _coefficients(o, t, lr):
    weight = np.asarray(t, dtype=float) ** o["beta2_decay"]
    eps1 = o["eps1"]
    return {"weight": weight, "one_minus_weight": 1.0 - weight,
            "weight_small": (np.abs(weight) < 0.5).astype(float), "eps1_square": eps1 * eps1,
            "rho": np.minimum(lr, 1.0 / np.asarray(t, dtype=float) ** 0.5), "clip": o["d"],
            "decay_factor": 1.0 - lr * o["weight_decay"]}


def _dtype_options(o, dtype):
    if o["eps1"] is None:  # torch: torch.finfo(param.dtype).eps
        o["eps1"] = float(np.finfo(dtype).eps)
    return o


ADAFACTOR = UpdateRule(
    name="adafactor", class_name="Adafactor",
    hyperparameters=(
        lr_option(1e-2),
        Hyperparameter("beta2_decay", -0.8, "the second moment's decay: its weight at step t is "
                       "t ** beta2_decay", low=-math.inf, high=0.0),
        Hyperparameter("eps1", None, "floor of the second moment (squared) and of the factored "
                       "row means; None: x's machine epsilon (torch's eps[0])", none_ok=True),
        Hyperparameter("eps2", 1e-3, "floor of the parameters' RMS in the step size (torch's "
                       "eps[1])"),
        Hyperparameter("d", 1.0, "clipping threshold: the update is divided by max(1, RMS / d)",
                       low=1.0),
        Hyperparameter("weight_decay", 0.0, "decoupled weight decay: x is scaled by "
                       "1 - lr weight_decay"),
        MAXIMIZE,
    ),
    slots=("variance",),
    coefficients=_coefficients,
    dtype_options=_dtype_options,
    reductions=("parameter_square", "update_square"),
    reduce=adafactor_reduce,
    finish=adafactor_finish,
    finished=("step",),
    element=adafactor_element,
    matrix=MatrixStep(slots=("row_var", "col_var"),
                      shapes=lambda o, shape: ((shape[0],), (shape[1],)),
                      step=factored_step),
    summary="second moments with a step-dependent decay, factored for matrices, and updates "
            "clipped by their RMS (Shazeer & Stern, 2018)",
    source="Shazeer & Stern (2018), 'Adafactor: Adaptive Learning Rates with Sublinear Memory "
           "Cost', ICML, arXiv:1804.04235, Algorithms 4 and 5; torch.optim.Adafactor",
    doc=r"""torch's Adafactor, whose ``eps=(eps1, eps2)`` is split as ``betas`` is. At step
    :math:`t`, with :math:`\hat\beta_t = t^{\text{beta2\_decay}}` (the weight of the new square),
    :math:`\rho_t = \min(\eta_t, 1/\sqrt t)`, :math:`n` the number of elements and RMS the root
    mean square over them, on a vector (torch's 1-D tensor):

    .. math::

        \alpha_t &= \max(\epsilon_2, \mathrm{RMS}(x_{t-1}))\, \rho_t, \qquad
        x \leftarrow (1 - \eta_t \lambda)\, x_{t-1} \\
        v_t &= v_{t-1} + \hat\beta_t (g_t^2 - v_{t-1}), \qquad
        u_t = g_t / \sqrt{\max(v_t, \epsilon_1^2)} \\
        x_t &= x - \frac{\alpha_t}{\max(1, \mathrm{RMS}(u_t) / d)}\, u_t

    The two RMS are sums over the vector (or over each view of each parameter group) inside the
    step. On a group view with a 2-D shape (:mod:`adamnb.optim.groups`) the second moment is
    factored as torch factors it for a matrix :math:`G` of :math:`R \times C`: row and column
    means :math:`r_t = \mathrm{lerp}(r_{t-1}, \mathrm{mean}_j G_{ij}^2, \hat\beta_t)`,
    :math:`c_t = \mathrm{lerp}(c_{t-1}, \mathrm{mean}_i G_{ij}^2, \hat\beta_t)` and
    :math:`v_t = r_t c_t^\top / \max(\mathrm{mean}(r_t), \epsilon_1)` (state ``row_var``,
    ``col_var``: :math:`R + C` numbers), computed where x lives (NumPy arrays or CUDA device
    arrays, :mod:`adamnb.optim.matrix`). ``eps1=None`` is x's
    machine epsilon, as torch's ``torch.finfo(param.dtype).eps``.""",
)

RULES = (ADAFACTOR,)
