r"""The matrix steps' arithmetic (Muon, Adafactor's factored moments), written once for the host
and the GPU.

A rule's :class:`adamnb.optim.MatrixStep` updates a group view with a 2-D shape as a matrix. Its
``step`` is written against :class:`MatrixOps`, the same way :class:`adamnb.nn.Sequential`'s
passes are written against their ops objects: matrix products, loops of the per-element
functions below, and sums. Two ops objects run it:

* on the host, :class:`adamnb.nn.layers.CpuOps`: NumPy's BLAS for the products, the elements in
  numba's serial CPU loops, sums in index order (of squares in float64, others in the array's
  dtype);
* on the GPU, :class:`adamnb.nn.cuda_ops.CudaOps`: the tiled product
  :func:`adamnb.backends.cuda.gemm`, the elements compiled as CUDA device functions in
  grid-stride kernels, sums as tree reductions on the device (in the array's dtype); only the
  step's few scalars (a Frobenius norm, a mean) come to the host.

So the host and the GPU run the same formulas; they agree to rounding (summation order, and the
GPU's fused multiply-adds), as the element rules' CPU and CUDA kernels do.

Elements (arrays first, then scalars, as in :mod:`adamnb.nn.elements`)
    * :func:`momentum_lerp`: torch.optim.Muon's momentum buffer ``B.lerp_(G, 1 - mu)`` and the
      matrix to orthogonalise (``G.lerp(B, mu)`` with Nesterov), written transposed when the
      matrix is taller than wide (Newton-Schulz runs on the wide orientation);
    * :func:`divide` and :func:`axpby`: ``A /= s`` and ``out = alpha A + beta B``, the
      Newton-Schulz iteration's element-wise parts;
    * :func:`decay_add`: ``X = decay X + coefficient U`` (the decoupled weight decay and the
      update, each product rounded, as torch's ``mul_`` then ``add_``);
    * :func:`factored_second_moment`: torch.optim.Adafactor's row (or column) variance
      ``lerp(var, ||G_i||^2 / n, beta2_t)``;
    * :func:`factored_update`: Adafactor's ``G / sqrt(max(r c^T / mean(r), eps1^2))``.
"""

import math

import numpy as np

from adamnb.backends.elements import lerp
from adamnb.backends.jit import elementwise

__all__ = ["MatrixOps", "ELEMENTS", "element_signatures", "momentum_lerp", "divide", "axpby",
           "decay_add", "factored_second_moment", "factored_update"]


@elementwise
def momentum_lerp(r, j, buffer, G, Y, weight, momentum, weight_small, nesterov, momentum_small,
                  transposed):
    """``buffer[r, j] = lerp(buffer, G, weight)`` (weight = 1 - momentum); ``Y[r, j]`` (or
    ``Y[j, r]``, ``transposed``) = ``lerp(G, buffer, momentum)`` with ``nesterov``, else the
    buffer."""
    g = G[r, j]
    b = lerp(buffer[r, j], g, weight, momentum, weight_small)
    buffer[r, j] = b
    u = lerp(g, b, momentum, weight, momentum_small) if nesterov else b
    if transposed:
        Y[j, r] = u
    else:
        Y[r, j] = u


@elementwise
def divide(r, j, A, s):
    """``A[r, j] /= s``."""
    A[r, j] = A[r, j] / s


@elementwise
def axpby(r, j, out, alpha, A, beta, B):
    """``out[r, j] = alpha A[r, j] + beta B[r, j]`` (``out`` may be ``A`` or ``B``)."""
    out[r, j] = alpha * A[r, j] + beta * B[r, j]


@elementwise
def decay_add(r, j, X, decay, coefficient, U, transposed):
    """``X[r, j] = decay X[r, j] + coefficient U[r, j]`` (``U[j, r]`` when ``transposed``)."""
    u = U[j, r] if transposed else U[r, j]
    X[r, j] = X[r, j] * decay + coefficient * u


@elementwise
def factored_second_moment(i, var, G, along_rows, count, weight, one_minus_weight,
                           weight_small):
    """Row ``i``'s (``along_rows``) or column ``i``'s variance: ``var[i] = lerp(var[i],
    ||G_i||^2 / count, weight)``, the norm's square as torch's ``norm(dim).square()``."""
    total = var.dtype.type(0)
    if along_rows:
        for k in range(G.shape[1]):
            total += G[i, k] * G[i, k]
    else:
        for k in range(G.shape[0]):
            total += G[k, i] * G[k, i]
    root = math.sqrt(total)
    var[i] = lerp(var[i], root * root / count, weight, one_minus_weight, weight_small)


@elementwise
def factored_update(r, j, U, G, row_var, col_var, mean, eps1_square, one, negate):
    """``U[r, j] = G[r, j] / sqrt(max(row_var[r] col_var[j] / mean, eps1^2))`` (``-G`` when
    ``negate``), as torch: the reciprocal square root times the gradient."""
    g = -G[r, j] if negate else G[r, j]
    estimate = row_var[r] * col_var[j] / mean
    U[r, j] = (one / math.sqrt(max(estimate, eps1_square))) * g


#: element -> (dimensions of its loop, number of arguments after the indices)
ELEMENTS = {
    momentum_lerp: (2, 9),
    divide: (2, 2),
    axpby: (2, 5),
    decay_add: (2, 5),
    factored_second_moment: (1, 7),
    factored_update: (2, 8),
}


class MatrixOps:
    """What a matrix step computes with, on one device: products, element loops, sums, and
    scratch matrices kept from step to step.

    Parameters
    ----------
    device : bool
        True: CUDA device arrays (:class:`adamnb.nn.cuda_ops.CudaOps`); False: NumPy arrays
        (:class:`adamnb.nn.layers.CpuOps`).
    threads_per_block : int, optional
        Of the device's element loops and sums (a power of two); default
        :data:`adamnb.backends.cuda.DEFAULT_THREADS_PER_BLOCK`. The products use
        :data:`adamnb.nn.cuda_ops.TILE`.

    Raises
    ------
    RuntimeError
        ``device`` and CUDA is unavailable.
    """

    def __init__(self, device=False, threads_per_block=None):
        if device:
            from adamnb.nn.cuda_ops import CudaOps
            self.ops = CudaOps(threads_per_block=threads_per_block)
        else:
            from adamnb.nn.layers import CpuOps
            self.ops = CpuOps()
        self.device = bool(device)
        self._reductions = {}
        self._scratch = {}

    def scratch(self, name, shape, dtype):
        """A C-contiguous array ``name`` of ``shape`` and ``dtype``, allocated once and reused:
        its content is whatever the last step left there."""
        key = (name, tuple(shape), np.dtype(dtype))
        if key not in self._scratch:
            self._scratch[key] = self.ops.empty(tuple(shape), np.dtype(dtype))
        return self._scratch[key]

    def matmul(self, A, B, C, trans_a=False, trans_b=False):
        """``C = op(A) @ op(B)`` (``C`` must not overlap ``A`` or ``B``)."""
        self.ops.matmul(A, B, C, trans_a, trans_b)

    def loop(self, element, extents, *args):
        """Run ``element`` (one of :data:`ELEMENTS`) over ``extents``: (rows, cols) or (n,)."""
        dimensions, arity = ELEMENTS[element]
        self.ops.loop((element, dimensions, arity), extents, *args)

    def _reduction(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._reductions:
            self._reductions[dtype] = self.ops.reductions(dtype)
        return self._reductions[dtype]

    @staticmethod
    def _flat(a):
        # a matrix view of a contiguous piece of the vector is C- or F-contiguous: its elements
        # in memory order, a view either way (a device array's .T would copy through a kernel
        # compiled at every call)
        return a.reshape(a.size, order="A")

    def sum_of_squares(self, a):
        """:math:`\\sum a_{ij}^2` of a contiguous (C or F) array, as a Python float."""
        return float(self.ops.sum_of_squares(self._flat(a), self._reduction(a.dtype)))

    def total(self, a):
        """:math:`\\sum a_i` of a contiguous vector, as a Python float."""
        return float(self.ops.total(a, self._reduction(a.dtype)))


def element_signatures(dtype):
    """The argument types of each element's grid-stride kernel for ``dtype``, as ``{element:
    tuple of numba types}``, with the layouts the steps use (a group's matrix view in column
    order, as :meth:`adamnb.nn.MLP.param_groups` gives; state and scratch in row order): for
    compiling the kernels ahead of time (:func:`adamnb.backends.cuda.compile_kernel_ptx`)."""
    from numba import from_dtype, types
    s = from_dtype(np.dtype(dtype))
    rows, view, vector = s[:, ::1], s[::1, :], s[::1]
    n, flag = types.int64, types.boolean
    return {
        momentum_lerp: (n, n, rows, view, rows, s, s, flag, flag, flag, flag),
        divide: (n, n, rows, s),
        axpby: (n, n, rows, s, rows, s, rows),
        decay_add: (n, n, view, s, s, rows, flag),
        factored_second_moment: (n, vector, view, flag, s, s, s, flag),
        factored_update: (n, n, rows, view, vector, vector, s, s, s, flag),
    }
