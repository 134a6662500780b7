r"""The MLP of :mod:`adamnb.nn` on the GPU: forward, backward and a training loop in numba.cuda.

:class:`CudaMLP` wraps an :class:`adamnb.nn.MLP` and computes the same objective and gradient on
device arrays, with the same flat parameter layout (``W_k`` of shape ``(n_{k-1}, n_k)``
row-major, then ``b_k``, layer after layer) and the same dropout masks; :func:`train_cuda` is
:func:`adamnb.nn.training.train` with the data, parameters, gradient and optimizer state on the
device. Model and notation are those of :mod:`adamnb.nn`:

.. math::

    a_0 = X \odot D_0, \quad a_k = \operatorname{relu}(a_{k-1} W_k + b_k) \odot D_k,
    \quad z_L = a_{L-1} W_L + b_L, \quad
    f = \frac1B \sum_i \Big(\log \sum_c e^{z_{L,ic}} - z_{L,iy_i}\Big)
        + \frac\lambda2 \sum_k \lVert W_k \rVert_F^2 .

Kernels, and why
    * **Matrix products**: one tiled kernel, ``C = op(A) @ op(B)`` with ``op`` the identity or
      the transpose, compiled for the three layouts the passes need: ``a @ W`` (forward),
      ``a.T @ delta`` (weight gradients) and ``delta @ W.T`` (backpropagation). Transposing
      *while loading the tiles* avoids a transposed copy of each operand per step: a block of
      ``TILE x TILE`` threads loads one ``TILE x TILE`` tile of each operand into shared memory,
      always reading global memory along its contiguous axis (consecutive ``threadIdx.x``, so
      the loads coalesce) and, for a transposed operand, storing the tile transposed. The
      shared tiles are padded to ``TILE + 1`` columns so that the transposed stores do not
      conflict on memory banks. Each thread computes one element of ``C``, summing over ``k`` in
      order; ``C`` tiles are visited grid-stride, so any matrix size works with any grid. This is
      the textbook shared-memory GEMM, not cuBLAS: simple, exact in its summation order, and
      without a dependency; a production run on large layers would call cuBLAS (e.g. through
      CuPy) for these three products instead.
    * **Bias + ReLU + dropout** are one elementwise pass over the pre-activations (as in the
      CPU code), the input dropout another; **backward gating** (``delta *= scale`` where
      ``a > 0``, else 0) one pass; the **bias gradients** are column sums with one thread per
      column that adds the rows in order (consecutive threads read consecutive columns: coalesced,
      and the CPU's summation order, so the same bits without FMA).
    * **Softmax cross-entropy**: one thread per row (the rows are short: 10 classes for MNIST)
      adds the bias, finds the largest logit, writes the row's loss and whether it was
      classified correctly, and with ``gradient`` overwrites the logits with
      ``(softmax - onehot) / B``. The batch's loss, correct count and the L2 sums are reductions
      on the device (:class:`adamnb.backends.cuda.Reduction`): only those scalars come back to the host.

Dropout masks
    The mask entry of row ``r``, unit ``j`` of layer ``k`` at training call ``s`` is
    ``uniform_at(stream_key(seed, s, k), r * n_k + j) < p`` exactly as in :mod:`adamnb.nn`: the
    kernels call :func:`adamnb.backends.random.uniform_at` compiled as a CUDA device function from the
    same Python source (``cuda.jit(device=True)``), and the stream key is made on the host. So
    the masks are identical on CPU and GPU, and :class:`CudaMLP` shares the model's
    ``training_calls`` counter (it reads and increments ``model.training_calls``): CPU and GPU
    calls can be interleaved and still draw the masks a single-device run would.

Numerics
    Everything is computed in the model's dtype; float32 kernels contain no float64 arithmetic
    (the PTX tests check it). The CPU code evaluates the softmax and log-sum-exp in float64; here
    they are float32 for float32 models, so losses and gradients agree to float32 rounding
    (about 1e-6 relative), and the sums (loss over the batch, L2) are tree reductions rather
    than sequential ones. In float64 the results agree to ~1e-14. NVVM contracts multiply-adds
    into FMAs on a GPU; numba's simulator runs the same Python without them.

``numba.cuda`` is imported only when a :class:`CudaMLP` is created.
"""

import math

import numpy as np

from adamnb.backends import cuda as cuda_backend
from adamnb.backends.random import stream_key, uniform_at
from adamnb.nn.models import EVALUATION_CHUNK, MLP

__all__ = ["CudaMLP", "train_cuda", "gather_rows", "kernel_ptx", "TILE", "THREADS_PER_BLOCK"]

#: Side of the square tiles of the matrix-product kernel (TILE x TILE threads per block).
TILE = 16
#: Threads per block of the elementwise and per-row kernels, and of the reductions (a power of
#: two). Tests patch both to tiny values so that every launch spans several blocks.
THREADS_PER_BLOCK = cuda_backend.DEFAULT_THREADS_PER_BLOCK

_kernels = {}
# numba.cuda once imported; reached through this module global (the simulator swaps it).
_numba_cuda = None


def _cuda():
    global _numba_cuda
    if _numba_cuda is None:
        _numba_cuda = cuda_backend._cuda()
    return _numba_cuda


def _simulated_uniform_at(key, i):
    # The simulator runs uniform_at on NumPy uint64 scalars, whose wrapping multiplications
    # (intended: SplitMix64 works modulo 2**64) would each warn about overflow.
    with np.errstate(over="ignore"):
        return uniform_at(key, i)


def _device_uniform():
    """:func:`adamnb.backends.random.uniform_at` as a CUDA device function (same source as the CPU's)."""
    if "uniform_at" not in _kernels:
        source = _simulated_uniform_at if cuda_backend.simulator_enabled() else uniform_at
        _kernels["uniform_at"] = _cuda().jit(device=True)(source)
    return _kernels["uniform_at"]


# --- kernel sources (plain Python, compiled per dtype on first use) -------------------------------

def _gemm_function(trans_a, trans_b, tile, dtype):
    """``C = op(A) @ op(B)``; ``op`` transposes when ``trans_a`` / ``trans_b`` (module notes)."""
    from numba import from_dtype
    _cuda()
    scalar = from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)
    T = int(tile)
    padded = (T, T + 1)  # a constant shape: one spare column against bank conflicts

    def gemm(A, B, C):
        As = _numba_cuda.shared.array(padded, scalar)  # As[i, p] = op(A)[row0 + i, p0 + p]
        Bs = _numba_cuda.shared.array(padded, scalar)  # Bs[p, j] = op(B)[p0 + p, col0 + j]
        tx = _numba_cuda.threadIdx.x
        ty = _numba_cuda.threadIdx.y
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        for tm in range(_numba_cuda.blockIdx.y, (M + T - 1) // T, _numba_cuda.gridDim.y):
            for tn in range(_numba_cuda.blockIdx.x, (N + T - 1) // T, _numba_cuda.gridDim.x):
                row0 = tm * T
                col0 = tn * T
                acc = zero
                for p0 in range(0, K, T):
                    if trans_a:  # op(A)[i, p] = A[p, i]: read along A's rows, store transposed
                        p = p0 + ty
                        i = row0 + tx
                        As[tx, ty] = A[p, i] if p < K and i < M else zero
                    else:
                        i = row0 + ty
                        p = p0 + tx
                        As[ty, tx] = A[i, p] if i < M and p < K else zero
                    if trans_b:  # op(B)[p, j] = B[j, p]
                        j = col0 + ty
                        p = p0 + tx
                        Bs[tx, ty] = B[j, p] if j < N and p < K else zero
                    else:
                        p = p0 + ty
                        j = col0 + tx
                        Bs[ty, tx] = B[p, j] if p < K and j < N else zero
                    _numba_cuda.syncthreads()
                    for q in range(T):
                        acc += As[ty, q] * Bs[q, tx]
                    _numba_cuda.syncthreads()
                i = row0 + ty
                j = col0 + tx
                if i < M and j < N:
                    C[i, j] = acc

    return gemm


def _bias_relu_dropout_function(dtype):
    """z <- relu(z + b), then inverted dropout (kept units times ``scale``, dropped ones 0)."""
    _cuda()
    uniform = _device_uniform()
    zero = np.dtype(dtype).type(0)

    def bias_relu_dropout(z, b, key, drop, scale):
        cols = z.shape[1]
        for i in range(_numba_cuda.grid(1), z.size, _numba_cuda.gridsize(1)):
            r = i // cols
            j = i - r * cols
            v = z[r, j] + b[j]
            if v < zero:  # not `v <= 0 or NaN`: a NaN stays NaN, as on the CPU
                v = zero
            if drop > zero:
                if uniform(key, i) < drop:  # i = r * cols + j, the CPU's index
                    v = zero
                else:
                    v = v * scale
            z[r, j] = v

    return bias_relu_dropout


def _dropout_input_function(dtype):
    _cuda()
    uniform = _device_uniform()
    zero = np.dtype(dtype).type(0)

    def dropout_input(X, out, key, drop, scale):
        cols = X.shape[1]
        for i in range(_numba_cuda.grid(1), X.size, _numba_cuda.gridsize(1)):
            r = i // cols
            j = i - r * cols
            out[r, j] = zero if uniform(key, i) < drop else X[r, j] * scale

    return dropout_input


def _relu_dropout_backward_function(dtype):
    """delta <- delta * scale where the unit was active and kept (a > 0), else 0."""
    _cuda()
    zero = np.dtype(dtype).type(0)

    def relu_dropout_backward(delta, a, scale):
        cols = delta.shape[1]
        for i in range(_numba_cuda.grid(1), delta.size, _numba_cuda.gridsize(1)):
            r = i // cols
            j = i - r * cols
            delta[r, j] = delta[r, j] * scale if a[r, j] > zero else zero

    return relu_dropout_backward


def _column_sums_function(dtype):
    """out[j] = sum_r delta[r, j], rows in order: one thread per column."""
    _cuda()
    zero = np.dtype(dtype).type(0)

    def column_sums(delta, out):
        rows, cols = delta.shape
        for j in range(_numba_cuda.grid(1), cols, _numba_cuda.gridsize(1)):
            acc = zero
            for r in range(rows):
                acc += delta[r, j]
            out[j] = acc

    return column_sums


def _softmax_cross_entropy_function(dtype):
    """Per row: logits += bias; loss = logsumexp - logit of the label; correct = argmax == label;
    with ``gradient`` the logits become (softmax - onehot) * inverse_rows. A label outside
    0 .. classes-1 gives a NaN loss (and gradient row), which the host then explains."""
    _cuda()
    T = np.dtype(dtype).type
    zero, one, minus_inf, nan = T(0), T(1), T(-np.inf), T(np.nan)

    def softmax_cross_entropy(z, b, y, losses, correct, inverse_rows, gradient):
        rows, classes = z.shape
        for r in range(_numba_cuda.grid(1), rows, _numba_cuda.gridsize(1)):
            top = minus_inf
            best = 0
            for c in range(classes):
                v = z[r, c] + b[c]
                z[r, c] = v
                if v > top:
                    top = v
                    best = c
            label = y[r]
            if label < 0 or label >= classes:
                losses[r] = nan
                correct[r] = 0
                if gradient:
                    for c in range(classes):
                        z[r, c] = nan
                continue
            correct[r] = 1 if best == label else 0
            norm = zero
            for c in range(classes):
                norm += math.exp(z[r, c] - top)
            losses[r] = math.log(norm) + top - z[r, label]
            if gradient:
                for c in range(classes):
                    p = math.exp(z[r, c] - top) / norm
                    if c == label:
                        p = p - one
                    z[r, c] = p * inverse_rows

    return softmax_cross_entropy


def _add_scaled_function(dtype):
    """g <- g + alpha * w (the L2 term of the weight gradients)."""
    _cuda()

    def add_scaled(g, w, alpha):
        for i in range(_numba_cuda.grid(1), g.size, _numba_cuda.gridsize(1)):
            g[i] = g[i] + alpha * w[i]

    return add_scaled


def _gather_function(dtype):
    """Xb[r] = X[rows[r]], yb[r] = y[rows[r]]: a minibatch from data kept on the device."""
    _cuda()

    def gather(X, y, rows, Xb, yb):
        cols = X.shape[1]
        for i in range(_numba_cuda.grid(1), Xb.size, _numba_cuda.gridsize(1)):
            r = i // cols
            j = i - r * cols
            source = rows[r]
            Xb[r, j] = X[source, j]
            if j == 0:
                yb[r] = y[source]

    return gather


_ELEMENTWISE = {
    "bias_relu_dropout": _bias_relu_dropout_function,
    "dropout_input": _dropout_input_function,
    "relu_dropout_backward": _relu_dropout_backward_function,
    "column_sums": _column_sums_function,
    "softmax_cross_entropy": _softmax_cross_entropy_function,
    "add_scaled": _add_scaled_function,
    "gather": _gather_function,
}
#: The three layouts of the matrix product: (transpose A, transpose B).
_GEMM_LAYOUTS = {"gemm_nn": (False, False), "gemm_tn": (True, False), "gemm_nt": (False, True)}


def _kernel(name, dtype, tile=None):
    key = (name, np.dtype(dtype), tile)
    if key not in _kernels:
        if name in _GEMM_LAYOUTS:
            source = _gemm_function(*_GEMM_LAYOUTS[name], tile, dtype)
        else:
            source = _ELEMENTWISE[name](dtype)
        _kernels[key] = _cuda().jit(source)
    return _kernels[key]


def _signatures(dtype):
    """Argument types of every kernel for ``dtype`` (labels and row indices are int64)."""
    from numba import from_dtype, types
    s = from_dtype(np.dtype(dtype))
    matrix, vector = s[:, ::1], s[::1]
    labels = types.int64[::1]
    gemm = (matrix, matrix, matrix)
    return {
        "gemm_nn": gemm, "gemm_tn": gemm, "gemm_nt": gemm,
        "bias_relu_dropout": (matrix, vector, types.uint64, s, s),
        "dropout_input": (matrix, matrix, types.uint64, s, s),
        "relu_dropout_backward": (matrix, matrix, s),
        "column_sums": (matrix, vector),
        "softmax_cross_entropy": (matrix, vector, labels, vector, types.int32[::1], s,
                                  types.boolean),
        "add_scaled": (vector, vector, s),
        "gather": (matrix, labels, labels, matrix, labels),
    }


def kernel_ptx(dtype, tile=TILE, cc=(9, 0)):
    """The PTX of every kernel of this module for ``dtype``, as ``{name: text}``.

    Needs NVVM but no GPU; not in the simulator (see :func:`adamnb.backends.cuda.compile_kernel_ptx`).
    """
    ptx = {}
    for name, signature in _signatures(dtype).items():
        if name in _GEMM_LAYOUTS:
            source = _gemm_function(*_GEMM_LAYOUTS[name], tile, dtype)
        else:
            source = _ELEMENTWISE[name](dtype)
        ptx[name] = cuda_backend.compile_kernel_ptx(source, signature, cc)
    return ptx


# --- launches -------------------------------------------------------------------------------------

def _launch(name, dtype, size, *args):
    """An elementwise (grid-stride) kernel over ``size`` items."""
    if size == 0:
        return
    tpb = int(THREADS_PER_BLOCK)
    _kernel(name, dtype)[cuda_backend.launch_blocks(size, tpb), tpb](*args)


def _gemm(layout, A, B, C, tile):
    M, N = C.shape
    if M == 0 or N == 0:
        return
    blocks = (min(-(-N // tile), 65535), min(-(-M // tile), 65535))
    _kernel(layout, C.dtype, tile)[blocks, (tile, tile)](A, B, C)


def gather_rows(X, y, rows, Xb, yb):
    """``Xb[r] = X[rows[r]]`` and ``yb[r] = y[rows[r]]`` on the device (``rows`` int64)."""
    _launch("gather", X.dtype, Xb.size, X, y, rows, Xb, yb)


def _check_threads():
    tpb = THREADS_PER_BLOCK
    if not (isinstance(tpb, (int, np.integer)) and 1 <= tpb <= 1024 and tpb & (tpb - 1) == 0):
        raise ValueError(f"Invalid THREADS_PER_BLOCK: {tpb!r}; expected a power of two in 1..1024")
    return int(tpb)


class CudaMLP:
    """An :class:`adamnb.nn.MLP`'s objective, gradient and evaluation on CUDA device arrays.

    Parameters
    ----------
    model : adamnb.nn.MLP
        The model: its ``sizes``, ``dropout``, ``input_dropout``, ``l2``, ``dtype``, ``seed`` and
        ``layout`` are read at every call, and :meth:`loss_and_grad` increments its
        ``training_calls``, exactly as ``model.loss_and_grad`` does.
    tile : int, optional
        Tile side of the matrix products (``tile * tile`` threads per block, at most 1024);
        default :data:`TILE`.

    Notes
    -----
    Parameters, gradients and data are device arrays (numba device arrays or objects with
    ``__cuda_array_interface__``); host arrays raise TypeError, since nothing is copied behind
    the caller's back (:func:`train_cuda` uploads host data once). Labels are integer device
    vectors (int64 is what :func:`train_cuda` uploads). Workspaces (activations and
    backward buffers) are kept per batch size, as on the CPU.
    """

    def __init__(self, model, *, tile=None):
        if not isinstance(model, MLP):
            raise TypeError(f"CudaMLP wraps an adamnb.nn.MLP, got {type(model).__name__}")
        cuda_backend.require_available("CudaMLP")
        tile = TILE if tile is None else tile
        if not (isinstance(tile, (int, np.integer)) and 1 <= tile and tile * tile <= 1024):
            raise ValueError(f"Invalid tile: {tile!r}; expected a positive integer with "
                             "tile * tile <= 1024 threads per block")
        _cuda()
        self.model = model
        self.tile = int(tile)
        self._tpb = _check_threads()
        self._workspaces = {}
        dtype = model.dtype
        self._sum = cuda_backend.Reduction("sum", dtype, self._tpb)
        self._sum_squares = cuda_backend.Reduction("sum_squares", dtype, self._tpb)
        self._count = cuda_backend.Reduction("sum", np.int32, self._tpb)

    def __repr__(self):
        return f"CudaMLP({self.model!r})"

    @property
    def dtype(self):
        return self.model.dtype

    # -- checks ---------------------------------------------------------------------------------

    def _check_params(self, params, name="params"):
        params = cuda_backend.as_device_array(params, name)
        if tuple(params.shape) != (self.model.n_params,) or params.dtype != self.dtype \
                or not params.is_c_contiguous():
            raise ValueError(f"{name} must be a contiguous {self.dtype} device vector of "
                             f"{self.model.n_params} values for {self.model!r}, got "
                             f"{params.dtype}{list(params.shape)}")
        return params

    def _check_data(self, X, y):
        X = cuda_backend.as_device_array(X, "X")
        n_inputs = self.model.sizes[0]
        if len(X.shape) != 2 or X.shape[1] != n_inputs:
            raise ValueError(f"X must have shape (n, {n_inputs}), got {tuple(X.shape)}")
        if X.dtype != self.dtype or not X.is_c_contiguous():
            raise ValueError(f"X must be a contiguous {self.dtype} device array, got a "
                             f"{'' if X.is_c_contiguous() else 'non-contiguous '}{X.dtype} one; "
                             "convert it on the host before uploading")
        y = cuda_backend.as_device_array(y, "y")
        if tuple(y.shape) != (X.shape[0],) or np.dtype(y.dtype).kind not in "iu" \
                or not y.is_c_contiguous():
            raise ValueError(f"y must be a contiguous device vector of {X.shape[0]} integer "
                             f"labels, got {y.dtype}{list(y.shape)}")
        return X, y

    def _explain_nan(self, y):
        """After a NaN loss: raise ValueError if the cause is a label out of range."""
        labels = y.copy_to_host()
        classes = self.model.sizes[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"labels must lie in 0 .. {classes - 1}; got {labels.min()} .. "
                             f"{labels.max()}")

    # -- parameters -----------------------------------------------------------------------------

    def layers(self, params):
        """The ``(W, b)`` device views of each layer into ``params`` (writes go through)."""
        params = self._check_params(params)
        return [(params[w].reshape(shape), params[b]) for w, shape, b in self.model.layout]

    # -- forward and backward -------------------------------------------------------------------

    def _workspace(self, rows):
        if rows not in self._workspaces:
            cuda = _numba_cuda
            if len(self._workspaces) > 4:
                self._workspaces.clear()
            sizes, dtype = self.model.sizes, self.dtype
            self._workspaces[rows] = {
                "activations": [cuda.device_array((rows, n), dtype) for n in sizes[1:]],
                "deltas": [cuda.device_array((rows, n), dtype) for n in sizes[1:-1]],
                "dropped_input": cuda.device_array((rows, sizes[0]), dtype),
                "losses": cuda.device_array(rows, dtype),
                "correct": cuda.device_array(rows, np.int32),
            }
        return self._workspaces[rows]

    def _forward(self, layers, X, y, training, gradient):
        """Run the layers; the summed cross-entropy of the rows (host float)."""
        model, T = self.model, self.dtype.type
        work = self._workspace(X.shape[0])
        activations = work["activations"]
        a = X
        if training and model.input_dropout > 0:
            _launch("dropout_input", self.dtype, X.size, X, work["dropped_input"],
                    stream_key(model.seed, model.training_calls, 0), T(model.input_dropout),
                    T(1.0 / (1.0 - model.input_dropout)))
            a = work["dropped_input"]
        drop = T(model.dropout if training else 0.0)
        scale = T(1.0 / (1.0 - model.dropout) if training else 1.0)
        for k, (W, b) in enumerate(layers[:-1], start=1):
            z = activations[k - 1]
            _gemm("gemm_nn", a, W, z, self.tile)
            _launch("bias_relu_dropout", self.dtype, z.size, z, b,
                    stream_key(model.seed, model.training_calls, k), drop, scale)
            a = z
        logits = activations[-1]
        _gemm("gemm_nn", a, layers[-1][0], logits, self.tile)
        rows = X.shape[0]
        inverse_rows = T(1.0) / T(rows)
        _launch("softmax_cross_entropy", self.dtype, rows, logits, layers[-1][1], y,
                work["losses"], work["correct"], inverse_rows, bool(gradient))
        total = self._sum(work["losses"])
        if math.isnan(total):
            self._explain_nan(y)
        return total

    def loss_and_grad(self, params, X, y, out=None):
        """Training objective and its gradient on the batch ``(X, y)``, with fresh dropout masks.

        As :meth:`adamnb.nn.MLP.loss_and_grad`, on the device.

        Parameters
        ----------
        params : device array, shape (n_params,), the model's dtype
        X : device array, shape (batch, n_inputs), the model's dtype, contiguous
        y : device array of int, shape (batch,)
        out : device array like ``params``, optional
            Where to write the gradient (a new device array otherwise).

        Returns
        -------
        f : float
            Mean cross-entropy of the batch plus the L2 penalty (one of the scalars brought back).
        g : device array
            The gradient, laid out like ``params`` (``out`` when given).
        """
        model, T = self.model, self.dtype.type
        layers = self.layers(params)
        X, y = self._check_data(X, y)
        rows = X.shape[0]
        if rows == 0:
            raise ValueError("the batch is empty")
        if out is None:
            out = _numba_cuda.device_array(model.n_params, self.dtype)
        else:
            out = self._check_params(out, "out")
        grads = self.layers(out)
        work = self._workspace(rows)
        total = self._forward(layers, X, y, training=True, gradient=True)
        activations, deltas = work["activations"], work["deltas"]
        inputs = [work["dropped_input"] if model.input_dropout > 0 else X] + activations[:-1]
        scale = T(1.0 / (1.0 - model.dropout))
        delta = activations[-1]  # the softmax layer's delta, (softmax - onehot) / B
        for k in range(model.n_layers - 1, -1, -1):
            (W, _), (gW, gb) = layers[k], grads[k]
            _gemm("gemm_tn", inputs[k], delta, gW, self.tile)
            _launch("column_sums", self.dtype, gb.size, delta, gb)
            if k > 0:
                below = deltas[k - 1]
                _gemm("gemm_nt", delta, W, below, self.tile)
                _launch("relu_dropout_backward", self.dtype, below.size, below, inputs[k], scale)
                delta = below
        f = total / rows
        if model.l2 > 0:
            for (W, _), (gW, _) in zip(layers, grads):
                f += 0.5 * model.l2 * self._sum_squares(W)
                _launch("add_scaled", self.dtype, W.size, gW.reshape(gW.size),
                        W.reshape(W.size), T(model.l2))
        model.training_calls += 1
        return float(f), out

    def loss(self, params, X, y, training=False):
        """The objective on ``(X, y)``: mean cross-entropy plus the L2 penalty (as the CPU's)."""
        model = self.model
        layers = self.layers(params)
        X, y = self._check_data(X, y)
        if training:
            if X.shape[0] == 0:
                raise ValueError("the batch is empty")
            f = self._forward(layers, X, y, training=True, gradient=False) / X.shape[0]
            model.training_calls += 1
        else:
            f = self.evaluate(params, X, y)[0]
        if model.l2 > 0:
            f += 0.5 * model.l2 * sum(self._sum_squares(W) for W, _ in layers)
        return float(f)

    def evaluate(self, params, X, y):
        """Mean cross-entropy (without the L2 penalty) and accuracy on ``(X, y)``, no dropout.

        Rows are processed :data:`adamnb.nn.EVALUATION_CHUNK` at a time, as on the CPU.
        """
        layers = self.layers(params)
        X, y = self._check_data(X, y)
        n = X.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        total, correct = 0.0, 0
        for start in range(0, n, EVALUATION_CHUNK):
            stop = min(start + EVALUATION_CHUNK, n)
            Xc, yc = X[start:stop], y[start:stop]
            total += self._forward(layers, Xc, yc, training=False, gradient=False)
            correct += self._count(self._workspace(stop - start)["correct"])
        return total / n, correct / n


# --- the training loop ----------------------------------------------------------------------------

def _to_device_data(model, X, y, name):
    """Validated device copies of host data (once), or device data as given."""
    if cuda_backend.is_device_array(X) or cuda_backend.is_device_array(y):
        if not (cuda_backend.is_device_array(X) and cuda_backend.is_device_array(y)):
            raise TypeError(f"{name}: give both inputs and labels on the device, or both on the "
                            "host")
        return cuda_backend.as_device_array(X, "X"), cuda_backend.as_device_array(y, "y")
    X, y = model.check_data(X, y)  # the CPU model's checks: shape, dtype, label range
    return (cuda_backend.to_device(X),
            cuda_backend.to_device(np.ascontiguousarray(y, dtype=np.int64)))


def train_cuda(model, params, optimizer, X, y, *, epochs, batch_size=128, X_test=None,
               y_test=None, seed=0, progress=None):
    """Train ``model`` on the GPU with a stateful optimizer, updating ``params`` in place.

    :func:`adamnb.nn.training.train` with everything on the device: the same minibatches in the
    same order (the permutations of :func:`adamnb.minibatches` with ``seed``), the same dropout
    masks, the same per-epoch :class:`adamnb.nn.training.History` records. Host data are uploaded
    once; each step gathers its batch's rows on the device (one upload of the epoch's row order
    per epoch), computes the loss and gradient (:meth:`CudaMLP.loss_and_grad`) and calls
    ``optimizer.step(params, gradient)`` on device arrays. One scalar, the batch's loss, comes
    back per step (and one per layer for the L2 penalty when ``model.l2 > 0``).

    Parameters
    ----------
    model : adamnb.nn.MLP
        Its ``training_calls`` advances by one per step, as with :func:`adamnb.nn.training.train`.
    params : device array, shape (n_params,), the model's dtype
        E.g. ``numba.cuda.to_device(model.init(seed))``; updated in place.
    optimizer : adamnb.Optimizer
        With ``backend="cuda"`` (or None): its state is created on the device at the first step.
    X, y : array_like or device arrays
        Training inputs ``(n, n_inputs)`` and integer labels ``(n,)``. Host arrays are checked
        as the CPU model checks them and uploaded once (labels as int64).
    epochs : int
    batch_size : int, default 128
        The last batch of an epoch is smaller when ``batch_size`` does not divide ``n``.
    X_test, y_test : array_like or device arrays, optional
        Evaluated on the device after every epoch.
    seed : int, default 0
        Seed of the minibatch order.
    progress : bool or None
        Show a progress bar (None: when stderr is a terminal).

    Returns
    -------
    adamnb.nn.training.History
        Per-epoch ``train_loss``, ``test_loss``, ``test_accuracy``, ``seconds`` (the GPU work of
        the epoch included: the loop synchronises before closing an epoch; the first epoch of a
        process also includes compiling the kernels, which are not cached on disk) and
        ``steps``. A non-finite training loss stops the run after its epoch.
    """
    from adamnb.nn.training import _EpochRecorder, _progress_bar
    from adamnb.optimize.stochastic import minibatches

    cuda_model = CudaMLP(model)
    params = cuda_model._check_params(params)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"Invalid epochs: {epochs!r}; expected a positive integer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size!r}; expected a positive integer")
    if getattr(optimizer, "backend", None) in ("cpu", "parallel"):
        raise ValueError(f"the optimizer runs on the CPU (backend={optimizer.backend!r}); "
                         "train_cuda needs backend='cuda' or None")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    d_X, d_y = cuda_model._check_data(*_to_device_data(model, X, y, "X, y"))
    d_X_test = d_y_test = None
    if X_test is not None:
        d_X_test, d_y_test = cuda_model._check_data(
            *_to_device_data(model, X_test, y_test, "X_test, y_test"))
    n = d_X.shape[0]
    if n == 0:
        raise ValueError("the training set is empty")

    cuda = _numba_cuda
    # The CPU loop's batches are minibatches(X, y, batch_size, seed): drawing the same iterator
    # over row numbers gives the same rows, batch for batch.
    batches = minibatches(np.arange(n), batch_size=batch_size, seed=seed)
    steps_per_epoch = batches.batches_per_epoch
    bar = _progress_bar(epochs * steps_per_epoch, progress, type(optimizer).__name__)
    recorder = _EpochRecorder(cuda_model, d_X_test, d_y_test, steps_per_epoch, bar)
    gradient = cuda.device_array(model.n_params, model.dtype)
    rows_per_batch = min(int(batch_size), n)
    X_batch = cuda.device_array((rows_per_batch, model.sizes[0]), model.dtype)
    y_batch = cuda.device_array(rows_per_batch, np.int64)
    try:
        for _ in range(epochs):
            order = np.concatenate([next(batches)[0] for _ in range(steps_per_epoch)])
            d_order = cuda.to_device(order.astype(np.int64))
            start = 0
            for step in range(steps_per_epoch):
                rows = d_order[start:min(start + rows_per_batch, n)]
                start += rows.size
                Xb, yb = X_batch[:rows.size], y_batch[:rows.size]
                gather_rows(d_X, d_y, rows, Xb, yb)
                f, _ = cuda_model.loss_and_grad(params, Xb, yb, out=gradient)
                recorder.loss(f)
                optimizer.step(params, gradient)
                if step == steps_per_epoch - 1:
                    cuda.synchronize()  # the epoch's time includes its last update
                recorder.stepped(params)
            if not math.isfinite(recorder.history[-1]["train_loss"]):
                break
    finally:
        if bar is not None:
            bar.close()
    return recorder.history
