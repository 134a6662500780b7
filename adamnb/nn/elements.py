r"""The per-element math of the dense layers, written once for the CPU and the GPU.

Each function here computes one element (or one row, or one column) of a layer's pass and is a
plain Python function marked with :func:`adamnb.backends.jit.elementwise` (numba's
``register_jitable``, inlined wherever a kernel calls it), the way each update rule's element is
written once in :mod:`adamnb.optim.rules`. Two loops run them:

* on the CPU, :func:`cpu_loop` compiles a serial loop around the element with the package's jit
  options (a 2-D element over ``for r in range(rows): for j in range(cols)``, a 1-D one over
  ``for i in range(n)``);
* on the GPU, :func:`adamnb.backends.cuda.elementwise_kernel` compiles the same function as a CUDA
  device function called from a grid-stride kernel (a 2-D element gets ``r, j`` from the flat
  index ``i = r * cols + j``).

So the CPU and the GPU run the same source: the same ReLU convention (a NaN stays NaN, so a
diverging run is reported), the same dropout masks (:func:`adamnb.backends.random.uniform_at` of
the flat index ``r * cols + j``), the same rule that a row whose logits are all NaN is never
counted as correct.

Conventions
    Arrays come first, then scalars, each its own argument (a tuple would cost the CPU's
    dispatcher microseconds per call to type). Literal constants are made in an array's dtype (``z.dtype.type(0)``), so float32 work stays
    float32 on the GPU. The softmax accumulates in the dtype of its ``losses`` array: the CPU
    passes float64 (the log-sum-exp of float32 logits in double precision, as NumPy users expect
    of a loss), the GPU the model's dtype (no float64 arithmetic in float32 kernels).

    Elements never receive tuples of arrays: numba loses the writes made through an array taken
    out of a tuple inside an ``inline="always"`` function (numba 0.68), and neither the CPU's
    inlining nor the CUDA target forwards ``*args``; so each loop has a fixed arity.

Math (notation of :mod:`adamnb.nn.models`)
    * :func:`bias_activation_dropout`: :math:`a = \operatorname{relu}(z + b) \odot D` (or without
      the ReLU), with the inverted-dropout mask :math:`D_{rj} = [u_{rj} \ge p] / (1 - p)`;
    * :func:`relu_dropout_backward`: :math:`\delta \leftarrow \delta / (1-p)` where the unit was
      active and kept (:math:`a > 0`), else 0;
    * :func:`dropout`: :math:`a = x \odot D`, and in place on a gradient its backward
      :math:`\delta \leftarrow \delta \odot D` (the mask recomputed);
    * :func:`softmax_cross_entropy_row`: :math:`\ell_r = \log\sum_c e^{z_{rc}} - z_{r y_r}` and,
      for the gradient, :math:`z_{rc} \leftarrow (\operatorname{softmax}(z_r)_c - [c = y_r]) / B`;
    * :func:`column_sum`: :math:`\sum_r \delta_{rj}`, rows in order (the bias gradient).
"""

import math

import numpy as np

from adamnb.backends.cpu import element_stamp
from adamnb.backends.jit import elementwise, jit
from adamnb.backends.random import uniform_at

__all__ = ["bias_activation_dropout", "dropout", "relu_dropout_backward",
           "softmax_cross_entropy_row", "column_sum", "add_scaled", "gather_rows",
           "gather_labels", "cpu_loop", "resolve", "ELEMENTS"]


# --- elements -------------------------------------------------------------------------------------

@elementwise
def bias_activation_dropout(r, j, z, b, key, drop, scale, relu):
    """``z[r, j] <- act(z[r, j] + b[j])`` (ReLU when ``relu``), then inverted dropout: 0 when
    ``uniform_at(key, r * cols + j) < drop``, else times ``scale``."""
    v = z[r, j] + b[j]
    if relu and v < z.dtype.type(0):  # not `v <= 0 or NaN`: a NaN stays NaN
        v = z.dtype.type(0)
    if drop > z.dtype.type(0):
        if uniform_at(key, r * z.shape[1] + j) < drop:
            v = z.dtype.type(0)
        else:
            v = v * scale
    z[r, j] = v


@elementwise
def dropout(r, j, x, out, key, drop, scale):
    """``out[r, j] <- x[r, j] * scale`` if kept, else 0.

    With ``out`` = ``x`` = the gradient it is also dropout's backward (the mask recomputed)."""
    if uniform_at(key, r * x.shape[1] + j) < drop:
        out[r, j] = out.dtype.type(0)
    else:
        out[r, j] = x[r, j] * scale


@elementwise
def relu_dropout_backward(r, j, delta, a, scale):
    """``delta[r, j] <- delta[r, j] * scale`` where ``a[r, j] > 0`` (active and kept), else 0."""
    if a[r, j] > a.dtype.type(0):
        delta[r, j] = delta[r, j] * scale
    else:
        delta[r, j] = delta.dtype.type(0)


@elementwise
def softmax_cross_entropy_row(r, z, b, y, losses, correct, inverse_rows, gradient):
    """Row ``r``: add the bias to the logits, write the row's cross-entropy to ``losses[r]`` and
    whether its largest logit is the label to ``correct[r]``; with ``gradient`` the logits become
    ``(softmax - onehot) * inverse_rows``.

    A label outside ``0 .. classes-1`` gives a NaN loss (the host explains it). A row whose logits
    are all NaN has no largest logit and is never counted as correct.
    """
    wide = losses.dtype.type
    classes = z.shape[1]
    top = z.dtype.type(-np.inf)
    best = -1
    for k in range(classes):
        v = z[r, k] + b[k]
        z[r, k] = v
        if v > top:
            top = v
            best = k
    label = y[r]
    if label < 0 or label >= classes:
        losses[r] = wide(np.nan)
        correct[r] = 0
        if gradient:
            for k in range(classes):
                z[r, k] = z.dtype.type(np.nan)
        return
    correct[r] = 1 if best == label else 0
    norm = wide(0)
    for k in range(classes):
        norm += math.exp(wide(z[r, k]) - top)
    losses[r] = math.log(norm) + top - z[r, label]
    if gradient:
        for k in range(classes):
            p = math.exp(wide(z[r, k]) - top) / norm
            if k == label:
                p = p - wide(1)
            z[r, k] = p * inverse_rows


@elementwise
def column_sum(j, delta, out):
    """``out[j] = sum_r delta[r, j]``, summed in row order (the same bits on every run)."""
    acc = out.dtype.type(0)
    for r in range(delta.shape[0]):
        acc += delta[r, j]
    out[j] = acc


@elementwise
def add_scaled(i, g, w, alpha):
    """``g[i] <- g[i] + alpha * w[i]`` (the L2 term of a weight gradient)."""
    g[i] = g[i] + alpha * w[i]


@elementwise
def gather_rows(r, j, X, Xb, rows):
    """``Xb[r, j] = X[rows[r], j]``: a minibatch's inputs from data kept on the device."""
    Xb[r, j] = X[rows[r], j]


@elementwise
def gather_labels(r, y, yb, rows):
    """``yb[r] = y[rows[r]]``: a minibatch's labels from data kept on the device."""
    yb[r] = y[rows[r]]


#: name -> (element, dimensions of its loop, number of arguments after the indices).
ELEMENTS = {
    "bias_activation_dropout": (bias_activation_dropout, 2, 6),
    "dropout": (dropout, 2, 5),
    "relu_dropout_backward": (relu_dropout_backward, 2, 3),
    "softmax_cross_entropy_row": (softmax_cross_entropy_row, 1, 7),
    "column_sum": (column_sum, 1, 2),
    "add_scaled": (add_scaled, 1, 3),
    "gather_rows": (gather_rows, 2, 3),
    "gather_labels": (gather_labels, 1, 3),
}


# --- the CPU loops ------------------------------------------------------------------------------------
# One serial loop per (dimensions, arity), its source written out for the arity from the template
# below (numba forwards no *args into an inlined element, as the module notes say), the way
# adamnb.backends.cuda writes the element's grid-stride kernel. Serial: the BLAS threads own the
# cores (see adamnb.nn.training). A closure over the element, cached on disk like
# adamnb.backends.cpu's kernels, and like those capturing the source stamp of the element's module
# and of the shared per-element code (adamnb.backends.cpu.element_stamp): an edit of either
# compiles the loop afresh. numba's disk cache needs a function's source file, so the generated
# builder is compiled under this file's name (whose stamp also keys the cache); a traceback through
# the loop shows this file's lines, not the template's.
_CPU_LOOPS = {
    2: """
def {name}(element, stamp):
    @jit
    def loop(rows, cols, {args}):
        stamp  # in the closure: part of the disk cache's key
        for r in range(rows):
            for j in range(cols):
                element(r, j, {args})
    return loop
""",
    1: """
def {name}(element, stamp):
    @jit
    def loop(n, {args}):
        stamp  # in the closure: part of the disk cache's key
        for i in range(n):
            element(i, {args})
    return loop
""",
}
_cpu_loops = {}


def _build_cpu_loop(element, dimensions, arity):
    # (a name of its own for each loop: numba names the cache's files after it)
    name = f"_{'rows_cols' if dimensions == 2 else 'items'}_{arity}"
    source = _CPU_LOOPS[dimensions].format(name=name,
                                           args=", ".join(f"a{k}" for k in range(arity)))
    namespace = {"__name__": __name__, "jit": jit}
    exec(compile(source, __file__, "exec"), namespace)  # noqa: S102 (a fixed template)
    return namespace[name](element, element_stamp(element))


def resolve(element):
    """``(element, dimensions, arity)`` of a key of :data:`ELEMENTS`, or of such a triple
    itself (the elements of :mod:`adamnb.optim.matrix` are run by triple)."""
    return ELEMENTS[element] if isinstance(element, str) else element


def cpu_loop(element):
    """The compiled serial CPU loop of ``element``: a key of :data:`ELEMENTS` or an
    ``(element, dimensions, arity)`` triple (see :func:`resolve`).

    A 2-D element's loop is called ``loop(rows, cols, *arrays_and_c)``, a 1-D one's
    ``loop(n, *arrays_and_c)``.
    """
    function, dimensions, arity = resolve(element)
    if function not in _cpu_loops:
        _cpu_loops[function] = _build_cpu_loop(function, dimensions, arity)
    return _cpu_loops[function]


@jit
def ordered_sum(values):
    """``sum(values)`` in index order, in float64 for float64 input (a loss over rows)."""
    total = values.dtype.type(0)
    for i in range(values.size):
        total += values[i]
    return total


@jit
def sum_of_squares(w):
    """:math:`\\sum_i w_i^2`, accumulated in float64 in index order."""
    total = 0.0
    for i in range(w.size):
        total += np.float64(w[i]) * w[i]
    return total
