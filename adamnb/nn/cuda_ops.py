r"""The GPU's primitives for :class:`adamnb.nn.Sequential`'s passes: the CPU's element functions
compiled for CUDA.

:class:`CudaOps` offers the interface of :class:`adamnb.nn.layers.CpuOps` on CUDA device arrays,
so the models' forward and backward passes (:mod:`adamnb.nn.models`, :mod:`adamnb.nn.layers`) are
written once and run on either device:

* ``loop`` runs an element of :mod:`adamnb.nn.elements` (bias + activation + dropout, the
  backward gates, the softmax cross-entropy row, the column sums, ...) in a grid-stride kernel
  built from the same function (:func:`adamnb.backends.cuda.elementwise_kernel`);
* ``matmul`` is the tiled shared-memory product :func:`adamnb.backends.cuda.gemm`;
* the batch's loss, correct count and the L2 sums are :class:`adamnb.backends.cuda.Reduction`\ s
  on the device: only those scalars come back to the host.

Dense and Dropout layers have a GPU path (so :class:`adamnb.nn.MLP` and
:class:`adamnb.nn.SoftmaxRegression` do); Conv2D does not yet.

Numerics
    Everything is computed in the model's dtype: the softmax accumulates in the per-row losses'
    dtype, the model's here (float64 on the CPU), so float32 kernels contain no float64 arithmetic
    (the PTX tests check it) and agree with the CPU to float32 rounding (about 1e-6 relative); the
    sums over the batch are tree reductions. In float64 the results agree to ~1e-14. Dropout masks
    are identical on both devices (the same counter-based function of the same indices). NVVM
    contracts multiply-adds into FMAs on a GPU; numba's simulator runs the same Python without.

``numba.cuda`` is imported when a :class:`CudaOps` is created.
"""

import math

import numpy as np

from adamnb.backends import cuda as cuda_backend
from adamnb.nn.elements import resolve

__all__ = ["CudaOps", "TILE", "SIMULATOR_TILE", "element_signatures"]

#: Side of the square tiles of the matrix products (TILE x TILE threads per block); tests patch it.
TILE = 16

#: The largest default tile in numba's CUDA simulator, which starts a Python thread per GPU thread
#: of every launch: 4 x 4 threads keep it quick. The tile never changes a product's value (each
#: element sums over k in order, whatever the tiling).
SIMULATOR_TILE = 4


class CudaOps:
    """The passes' primitives on CUDA device arrays (see the module notes).

    Parameters
    ----------
    tile : int, optional
        Tile side of the matrix products (``tile * tile`` threads per block, at most 1024);
        default :data:`TILE` (in numba's simulator at most :data:`SIMULATOR_TILE`).
    threads_per_block : int, optional
        Of the element kernels and reductions (a power of two); default
        :data:`adamnb.backends.cuda.DEFAULT_THREADS_PER_BLOCK`.

    Raises
    ------
    RuntimeError
        CUDA is unavailable.
    ValueError
        An invalid ``tile`` or ``threads_per_block``.

    Notes
    -----
    Two ops objects with the same settings are equal: a model keeps one set of scratch buffers
    per settings and batch size.
    """

    name = "cuda"

    def __init__(self, tile=None, threads_per_block=None):
        if tile is None:
            tile = min(TILE, SIMULATOR_TILE) if cuda_backend.simulator_enabled() else TILE
        if isinstance(tile, bool) or not (isinstance(tile, (int, np.integer)) and 1 <= tile
                                          and tile * tile <= 1024):
            raise ValueError(f"Invalid tile: {tile!r}; expected a positive integer with "
                             "tile * tile <= 1024 threads per block")
        tpb = cuda_backend.DEFAULT_THREADS_PER_BLOCK if threads_per_block is None \
            else threads_per_block
        if isinstance(tpb, bool) or not (isinstance(tpb, (int, np.integer)) and 1 <= tpb <= 1024
                                         and tpb & (tpb - 1) == 0):
            raise ValueError(f"Invalid threads_per_block: {tpb!r}; expected a power of two in "
                             "1..1024")
        cuda_backend.require_available("a model on device arrays")
        self.tile, self.threads_per_block = int(tile), int(tpb)

    def __eq__(self, other):
        return isinstance(other, CudaOps) and (self.tile, self.threads_per_block) == \
            (other.tile, other.threads_per_block)

    def __hash__(self):
        return hash((self.name, self.tile, self.threads_per_block))

    def __repr__(self):
        return f"CudaOps(tile={self.tile}, threads_per_block={self.threads_per_block})"

    # -- checks ---------------------------------------------------------------------------------

    @staticmethod
    def check_params(model, params, name="params"):
        if any(not getattr(block, "has_gpu_path", True) for block in model.blocks):
            raise TypeError(f"{model!r} has layers without a GPU path (Conv2D); pass NumPy "
                            "arrays to run it on the CPU")
        params = cuda_backend.as_device_array(params, name)
        if tuple(params.shape) != (model.n_params,) or params.dtype != model.dtype \
                or not params.is_c_contiguous():
            raise ValueError(f"{name} must be a contiguous {model.dtype} device vector of "
                             f"{model.n_params} values for {model!r}, got "
                             f"{params.dtype}{list(params.shape)}")
        return params

    @staticmethod
    def check_data(model, X, y):
        X = cuda_backend.as_device_array(X, "X")
        if tuple(X.shape[1:]) != model.input_shape:
            expected = ", ".join(map(str, model.input_shape))
            raise ValueError(f"X must have shape (n, {expected}), got {tuple(X.shape)}")
        if X.dtype != model.dtype or not X.is_c_contiguous():
            raise ValueError(f"X must be a contiguous {model.dtype} device array, got a "
                             f"{'' if X.is_c_contiguous() else 'non-contiguous '}{X.dtype} one; "
                             "convert it on the host before uploading")
        if y is not None:
            y = cuda_backend.as_device_array(y, "y")
            if tuple(y.shape) != (X.shape[0],) or np.dtype(y.dtype).kind not in "iu" \
                    or not y.is_c_contiguous():
                raise ValueError(f"y must be a contiguous device vector of {X.shape[0]} integer "
                                 f"labels, got {y.dtype}{list(y.shape)}")
        return X, y

    def check_out(self, model, params, out):
        if out is None:
            return cuda_backend.device_empty(model.n_params, model.dtype)
        return self.check_params(model, out, "out")

    @staticmethod
    def explain_nan(y, classes):
        """After a NaN loss: raise ValueError if the cause is a label out of range (the labels
        are checked on the host only then)."""
        labels = y.copy_to_host()
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels must lie in 0 .. {classes - 1}; got {labels.min()} .. "
                             f"{labels.max()}")

    # -- primitives -----------------------------------------------------------------------------

    @staticmethod
    def empty(shape, dtype):
        return cuda_backend.device_empty(shape, dtype)

    def matmul(self, A, B, C, trans_a=False, trans_b=False):
        """``C = op(A) @ op(B)`` (:func:`adamnb.backends.cuda.gemm`)."""
        cuda_backend.gemm(A, B, C, trans_a, trans_b, self.tile)

    def loop(self, name, extents, *args):
        """Run element ``name`` of :mod:`adamnb.nn.elements` (or an ``(element, dimensions,
        arity)`` triple, :func:`adamnb.nn.elements.resolve`) over ``extents`` on the device."""
        element, dimensions, arity = resolve(name)
        kernel = cuda_backend.elementwise_kernel(element, dimensions, arity)
        cuda_backend.launch(kernel, math.prod(extents), self.threads_per_block, *extents, *args)

    @staticmethod
    def loss_dtype(dtype):
        """The per-row losses' dtype: the model's (no float64 work in float32 kernels)."""
        return np.dtype(dtype)

    def reductions(self, dtype):
        tpb = self.threads_per_block
        return {"sum": cuda_backend.Reduction("sum", dtype, tpb),
                "sum_squares": cuda_backend.Reduction("sum_squares", dtype, tpb),
                "count": cuda_backend.Reduction("sum", np.int32, tpb)}

    @staticmethod
    def total(losses, reductions):
        return float(reductions["sum"](losses))

    @staticmethod
    def count(correct, reductions):
        return int(reductions["count"](correct))

    @staticmethod
    def sum_of_squares(w, reductions):
        return float(reductions["sum_squares"](w))

    def add_scaled(self, g, w, alpha):
        """``g += alpha * w`` (element :func:`adamnb.nn.elements.add_scaled`)."""
        self.loop("add_scaled", (g.size,), g.reshape(g.size), w.reshape(w.size), alpha)

    @staticmethod
    def to_host(a):
        return a.copy_to_host()


def element_signatures(dtype):
    """The argument types of every element's kernel for ``dtype`` (labels and row indices
    int64), as ``{name: tuple of numba types}``: for compiling the kernels ahead of time."""
    from numba import from_dtype, types
    s = from_dtype(np.dtype(dtype))
    matrix, vector = s[:, ::1], s[::1]
    labels = types.int64[::1]
    n = types.int64
    return {
        "bias_activation_dropout": (n, n, matrix, vector, types.uint64, s, s, types.boolean),
        "dropout": (n, n, matrix, matrix, types.uint64, s, s),
        "relu_dropout_backward": (n, n, matrix, matrix, s),
        "softmax_cross_entropy_row": (n, matrix, vector, labels, vector, types.int32[::1], s,
                                      types.boolean),
        "column_sum": (n, matrix, vector),
        "add_scaled": (n, vector, vector, s),
        "gather_rows": (n, n, matrix, matrix, labels),
        "gather_labels": (n, labels, labels, labels),
    }
