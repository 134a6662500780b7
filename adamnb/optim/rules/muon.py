"""Muon, momentum orthogonalised by Newton-Schulz (Jordan et al., 2024), as torch.optim.Muon: for
the parameter groups whose views are matrices; every other group runs AdamW (or the rule its
``"method"`` names), as torch recommends."""

import math

from adamnb.optim import matrix
from adamnb.optim._rule import Hyperparameter, MatrixStep, UpdateRule, lr_option

#: torch.optim.Muon's constants (from Keller Jordan's post).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(Y, a, b, c, steps, eps, ops):
    """torch's ``_zeropower_via_newtonschulz`` in place on ``Y``, a C-contiguous (m, n) matrix
    with m <= n (the caller transposes a tall matrix): ``steps`` quintic Newton-Schulz
    iterations from ``Y / max(||Y||_F, eps)``, in Y's dtype (torch computes in bfloat16; see the
    rule's notes), with ``ops`` (:class:`adamnb.optim.matrix.MatrixOps`)."""
    dtype = Y.dtype.type
    m, n = Y.shape
    ops.loop(matrix.divide, (m, n), Y, max(dtype(math.sqrt(ops.sum_of_squares(Y))), dtype(eps)))
    gram = ops.scratch("gram", (m, m), Y.dtype)
    gram_update = ops.scratch("gram_update", (m, m), Y.dtype)
    product = ops.scratch("product", (m, n), Y.dtype)
    for _ in range(steps):
        ops.matmul(Y, Y, gram, trans_b=True)  # Y Y^T
        ops.matmul(gram, gram, gram_update)
        # torch.addmm(gram, gram, gram, beta=b, alpha=c)
        ops.loop(matrix.axpby, (m, m), gram_update, b, gram, c, gram_update)
        ops.matmul(gram_update, Y, product)
        ops.loop(matrix.axpby, (m, n), Y, a, Y, dtype(1), product)  # torch.addmm(Y, ., Y, beta=a)


def adjusted_lr(lr, adjust_lr_fn, shape):
    """torch's ``_adjust_lr``: the rate scaled for a ``shape`` = (A, B) matrix."""
    rows, cols = shape
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    return lr * (0.2 * math.sqrt(max(rows, cols)))  # "match_rms_adamw"


def muon_step(X, G, state, v, options, ops):
    """torch's ``_single_tensor_muon`` on the matrix view ``X`` of a group view (host or device
    arrays, with the matching ``ops``); ``state`` is (momentum_buffer,)."""
    (buffer,) = state
    dtype = X.dtype.type
    rows, cols = X.shape
    momentum = dtype(options["momentum"])
    weight = dtype(1.0) - momentum
    transposed = rows > cols  # Newton-Schulz runs on the wide orientation
    Y = ops.scratch("orthogonal", (cols, rows) if transposed else (rows, cols), X.dtype)
    ops.loop(matrix.momentum_lerp, (rows, cols), buffer, G, Y, weight, momentum,
             bool(weight < 0.5), bool(options["nesterov"]), bool(momentum < 0.5), transposed)
    newton_schulz(Y, dtype(options["ns_a"]), dtype(options["ns_b"]), dtype(options["ns_c"]),
                  options["ns_steps"], options["eps"], ops)
    rate = adjusted_lr(float(v["lr"]), options["adjust_lr_fn"], X.shape)
    ops.loop(matrix.decay_add, (rows, cols), X, dtype(v["decay_factor"]), dtype(-rate), Y,
             transposed)


MUON = UpdateRule(
    name="muon", class_name="Muon",
    hyperparameters=(
        lr_option(1e-3),
        Hyperparameter("weight_decay", 0.1, "decoupled weight decay: x is scaled by "
                       "1 - lr weight_decay"),
        Hyperparameter("momentum", 0.95, "momentum factor"),
        Hyperparameter("nesterov", True, "Nesterov momentum: orthogonalise "
                       "lerp(g, buffer, momentum) rather than the buffer", kind="bool"),
        Hyperparameter("ns_a", NS_COEFFICIENTS[0], "coefficient a of the Newton-Schulz "
                       "polynomial (torch's ns_coefficients[0])", low=-math.inf),
        Hyperparameter("ns_b", NS_COEFFICIENTS[1], "coefficient b (torch's ns_coefficients[1])",
                       low=-math.inf),
        Hyperparameter("ns_c", NS_COEFFICIENTS[2], "coefficient c (torch's ns_coefficients[2])",
                       low=-math.inf),
        Hyperparameter("eps", 1e-7, "floor of the Frobenius norm the update is divided by"),
        Hyperparameter("ns_steps", 5, "Newton-Schulz iterations (torch: fewer than 100)",
                       kind="int", high=100, high_open=True),
        Hyperparameter("adjust_lr_fn", None, "scaling of lr by the matrix's shape (A, B): None "
                       "or 'original', sqrt(max(1, A/B)); 'match_rms_adamw', 0.2 sqrt(max(A, B))",
                       kind="choice", choices=(None, "original", "match_rms_adamw")),
    ),
    slots=(),
    scalars=("lr", "decay_factor"),
    coefficients=lambda o, t, lr: {"decay_factor": 1.0 - lr * o["weight_decay"]},
    element=None,
    matrix=MatrixStep(slots=("momentum_buffer",), shapes=lambda o, shape: (tuple(shape),),
                      step=muon_step),
    vector_fallback="adamw",
    summary="momentum orthogonalised by Newton-Schulz iterations, for matrix parameters "
            "(Jordan et al., 2024)",
    source="Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein (2024), 'Muon: An optimizer "
           "for hidden layers in neural networks', kellerjordan.github.io/posts/muon; Liu et al. "
           "(2025), 'Muon is Scalable for LLM Training', arXiv:2502.16982 (match_rms_adamw); "
           "torch.optim.Muon",
    doc=r"""For each matrix :math:`X` (a view of a parameter group with a 2-D ``shape``,
    :mod:`adamnb.optim.groups`; e.g. :meth:`adamnb.nn.MLP.param_groups`), with momentum
    :math:`\mu`, weight decay :math:`\lambda` and the gradient :math:`G_t`:

    .. math::

        B_t &= \mu B_{t-1} + (1-\mu) G_t \quad (\text{torch's } B.\mathrm{lerp}(G, 1-\mu)), \qquad
        \tilde B_t = \begin{cases} G_t + \mu (B_t - G_t) & \text{nesterov} \\
                                  B_t & \text{otherwise} \end{cases} \\
        O_t &= \mathrm{NS}^{(a,b,c)}_k(\tilde B_t), \qquad
        X_t = (1 - \eta_t\lambda) X_{t-1} - \eta_t\, s(A, B)\, O_t

    where :math:`\mathrm{NS}` starts from :math:`Y = \tilde B / \max(\lVert\tilde B\rVert_F,
    \epsilon)` (transposed if taller than wide) and repeats :math:`k` = ``ns_steps`` times
    :math:`M = Y Y^\top`, :math:`Y \leftarrow aY + (bM + cM^2) Y`; :math:`s(A, B) =
    \sqrt{\max(1, A/B)}` (``adjust_lr_fn`` None or "original") or :math:`0.2\sqrt{\max(A, B)}`
    ("match_rms_adamw") for an :math:`A \times B` matrix, as torch uses the parameter's shape.
    ``ns_coefficients`` is split into ``ns_a``, ``ns_b``, ``ns_c`` as ``betas`` is.

    Muon updates only matrices: groups whose views all have a 2-D shape. Every other group (the
    biases) runs the rule its ``"method"`` key names, AdamW by default, as torch recommends, with
    that rule's defaults updated with the group's own options. Without groups there is nothing
    to orthogonalise: ``method="muon"`` needs ``groups``.

    What runs where: on NumPy arrays the Newton-Schulz products run with NumPy's BLAS and the
    element-wise parts in numba's CPU loops; on CUDA device arrays the same step
    (:mod:`adamnb.optim.matrix`) runs on the GPU, products in :func:`adamnb.backends.cuda.gemm`,
    only the Frobenius norm coming to the host. Both compute in x's dtype (torch computes the
    products in bfloat16; with bfloat16 disabled torch gives these results to rounding, see the
    tests).""",
)

RULES = (MUON,)
