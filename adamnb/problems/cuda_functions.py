r"""Batched n-D Rosenbrock and Rastrigin on the GPU, and device objectives for ``minimize``.

For a device array ``X`` of shape ``(k, n)`` (k points, one per row) the kernels compute the
values ``f`` (shape ``(k,)``) and gradients ``G`` (shape ``(k, n)``) on the device, in X's dtype
(float32 or float64):

.. math::

    \mathrm{rosenbrock}(x) &= \sum_{i=0}^{n-2} 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2, \\
    \mathrm{rastrigin}(x) &= \sum_{i=0}^{n-1} x_i^2 + A\,(1 - \cos 2\pi x_i), \quad A = 10.

Nothing here restates a formula: each thread evaluates the one definition that
:mod:`adamnb.problems.functions` compiles for the CPU, compiled here as a CUDA device function:
:func:`~adamnb.problems.functions.rastrigin_term` for coordinate ``i``, and
:func:`~adamnb.problems.functions.rosenbrock_pair` for the pairs ``(i - 1, i)`` and
``(i, i + 1)`` that coordinate ``i`` belongs to, whose derivatives it adds as the CPU loop does
(``(0 + left pair's) + own pair's``). So without fused multiply-adds the gradient is the CPU's
bits; the values are sums, whose order differs (below).

Work decomposition
    One thread per row would serialise the common cases (one long vector for ``minimize``, or a
    few thousand 2-D starts would leave most of the GPU idle or read memory with a stride of
    ``n``). Instead the launch is a 2-D grid: ``blockIdx.y`` strides over the rows and, within a
    row, the threads of the ``gridDim.x`` blocks stride over the columns, consecutive threads on
    consecutive elements (coalesced reads of ``X`` and writes of ``G``). Each element's gradient
    needs only its neighbours, so it is written directly; each block folds its share of the
    row's value terms into one partial sum (:func:`adamnb.backends.cuda.block_tree`, the tree of
    :class:`~adamnb.backends.cuda.Reduction`) and a second small kernel adds a row's partials in
    order, one thread per row. ``gridDim.x``
    is ``min(ceil(n / threads), 32 * SMs)`` and ``gridDim.y`` fills the rest of the same cap, so
    a single huge vector and many small ones both fill the GPU.

Numerics
    All arithmetic is in X's dtype (constants are cast to it, and folded at compile time), so
    float32 kernels do no float64 work; the only float64 instructions in their PTX are those
    that libdevice's ``cosf``/``sinf`` use to reduce huge arguments (Payne-Hanek), as any CUDA
    program calling ``cosf`` has. The value is summed as per-thread strided sums combined in a
    tree, not left to right as on the CPU: the results agree to rounding (a few ulp times
    ``log n``), and the tree is the more accurate of the two.

Objectives for :func:`adamnb.optimize._device.minimize_on_device`
    :data:`rosenbrock` and :data:`rastrigin` take one device vector and return ``(f, g)``: ``f``
    a Python float (the one scalar that comes back per evaluation), ``g`` a device vector. ``g``
    is one of two buffers that the objective owns and alternates between calls, so the gradient
    of the previous call stays valid (``minimize_on_device`` returns it when a step goes
    non-finite); it is overwritten by the call after next.

``numba.cuda`` is imported only when a kernel is first needed.
"""

import numpy as np

from adamnb.backends import cuda as cuda_backend
from adamnb.problems import functions

__all__ = ["rosenbrock_batch", "rastrigin_batch", "DeviceObjective", "rosenbrock", "rastrigin",
           "OBJECTIVES", "kernel_ptx", "THREADS_PER_BLOCK"]

#: Threads per block of the launches here (a power of two; tests patch in a tiny one).
THREADS_PER_BLOCK = cuda_backend.DEFAULT_THREADS_PER_BLOCK

#: Each problem's one definition in :mod:`adamnb.problems.functions`: a per-coordinate term, or
#: the term of a pair of neighbours.
_DEFINITIONS = {"rosenbrock": ("pair", functions.rosenbrock_pair),
                "rastrigin": ("term", functions.rastrigin_term)}

_kernels = {}
# numba.cuda (adamnb.backends.cuda.numba_cuda), bound on first use: the kernels here reach it
# through this module global, which the simulator swaps for its fake module while they run.
_numba_cuda = None


def _bind_cuda():
    global _numba_cuda
    _numba_cuda = cuda_backend.numba_cuda()
    return _numba_cuda


# --- kernels --------------------------------------------------------------------------------------

def _pair_element(pair):
    """The element ``(x, i) -> (value term of i, df/dx_i)`` of a sum over neighbouring pairs, from
    the pair's ``(value, d_first, d_second)``, with the CPU's operations:
    ``(0 + d_second(i - 1)) + d_first(i)`` (see :func:`adamnb.problems.functions.rosenbrock_pair`).
    """
    def element(x, i):
        T = x.dtype.type
        value = T(0.0)
        d_first = T(0.0)
        d_second = T(0.0)
        if i + 1 < x.shape[0]:
            value, d_first, _ = pair(x, i)
        if i > 0:
            _, _, d_second = pair(x, i - 1)
        return value, (T(0.0) + d_second) + d_first

    return element


def _device_element(name):
    """The device function ``element(x, i) -> (value term, derivative)`` of ``name``."""
    shape, definition = _DEFINITIONS[name]
    element = cuda_backend.device_function(definition)
    if shape == "pair":
        element = cuda_backend.device_function(_pair_element(element))
    return element


def _value_and_grad_function(name, threads_per_block, dtype):
    """The Python source of the batched value-and-gradient kernel, not yet compiled."""
    _bind_cuda()
    dtype, scalar, zero = cuda_backend.kernel_types(dtype)
    width = int(threads_per_block)
    element = _device_element(name)
    tree = cuda_backend.block_tree(width, False)

    def value_and_grad(X, G, partials):
        rows, n = X.shape
        buffer = _numba_cuda.shared.array(width, scalar)
        tid = _numba_cuda.threadIdx.x
        start = _numba_cuda.blockIdx.x * width + tid
        stride = _numba_cuda.gridDim.x * width
        for r in range(_numba_cuda.blockIdx.y, rows, _numba_cuda.gridDim.y):
            x = X[r]
            acc = zero
            for i in range(start, n, stride):
                value, gradient = element(x, i)
                acc += value
                G[r, i] = gradient
            buffer[tid] = acc
            tree(buffer, tid)  # the tree begins with a barrier: the buffer is free for the next row
            if tid == 0:
                partials[r, _numba_cuda.blockIdx.x] = buffer[0]

    return value_and_grad


def _row_sums_function():
    """``f[r] = sum_b partials[r, b]``, in order, one thread per row."""
    _bind_cuda()

    def row_sums(partials, f):
        for r in range(_numba_cuda.grid(1), f.size, _numba_cuda.gridsize(1)):
            acc = partials[r, 0]
            for b in range(1, partials.shape[1]):
                acc += partials[r, b]
            f[r] = acc

    return row_sums


def _kernel(name, threads_per_block, dtype):
    key = (name, int(threads_per_block), np.dtype(dtype))
    if key not in _kernels:
        _kernels[key] = _bind_cuda().jit(_value_and_grad_function(*key))
    return _kernels[key]


def _row_sums_kernel():
    if "row_sums" not in _kernels:
        _kernels["row_sums"] = _bind_cuda().jit(_row_sums_function())
    return _kernels["row_sums"]


def _grid(rows, n, threads_per_block):
    """(blocks along a row, blocks over the rows): as many as :func:`launch_blocks` allows."""
    along = cuda_backend.launch_blocks(n, threads_per_block)
    # launch_blocks(k * threads) is min(k, the cap of blocks per launch): with k = rows * along
    # it leaves min(rows, cap // along) rows of `along` blocks.
    over = cuda_backend.launch_blocks(rows * along * threads_per_block, threads_per_block) // along
    return along, max(1, min(over, 65535))


def _check_threads(threads_per_block):
    tpb = THREADS_PER_BLOCK if threads_per_block is None else threads_per_block
    if not (isinstance(tpb, (int, np.integer)) and 1 <= tpb <= 1024 and tpb & (tpb - 1) == 0):
        raise ValueError(f"Invalid threads_per_block: {tpb!r}; expected a power of two in 1..1024")
    return int(tpb)


def _check_out(out, shape, dtype, name):
    out = cuda_backend.as_device_array(out, name)
    if tuple(out.shape) != shape or out.dtype != dtype or not out.is_c_contiguous():
        raise ValueError(f"{name} must be a contiguous {dtype} device array of shape "
                         f"{shape}, got {out.dtype}{list(out.shape)}")
    return out


def _batch(name, X, f, G, threads_per_block, partials=None):
    cuda_backend.require_available(f"adamnb.problems.cuda_functions.{name}_batch")
    cuda = cuda_backend.numba_cuda()
    X = cuda_backend.as_device_array(X, "X")
    if np.dtype(X.dtype).type not in (np.float32, np.float64):
        raise TypeError(f"X must have dtype float32 or float64, got {X.dtype}")
    if len(X.shape) != 2 or not X.is_c_contiguous():
        raise ValueError(f"X must be a contiguous 2-D device array (one point per row), got "
                         f"shape {tuple(X.shape)}")
    rows, n = X.shape
    tpb = _check_threads(threads_per_block)
    f = cuda.device_array(rows, X.dtype) if f is None else _check_out(f, (rows,), X.dtype, "f")
    G = cuda.device_array((rows, n), X.dtype) if G is None else \
        _check_out(G, (rows, n), X.dtype, "G")
    if rows == 0:
        return f, G
    if n == 0:
        raise ValueError("X has no columns; the functions need at least one coordinate")
    along, over = _grid(rows, n, tpb)
    if partials is None or tuple(partials.shape) != (rows, along):
        partials = cuda.device_array((rows, along), X.dtype)
    _kernel(name, tpb, X.dtype)[(along, over), tpb](X, G, partials)
    _row_sums_kernel()[cuda_backend.launch_blocks(rows, tpb), tpb](partials, f)
    return f, G


def rosenbrock_batch(X, f=None, G=None, *, threads_per_block=None):
    r"""Values and gradients of the n-D Rosenbrock function at the rows of ``X``, on the device.

    :math:`f(x) = \sum_{i<n-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`, as
    :func:`adamnb.problems.functions.rosenbrock`.

    Parameters
    ----------
    X : device array, shape (k, n), float32 or float64, contiguous
        One point per row (numba device array or ``__cuda_array_interface__`` object).
    f, G : device arrays, shapes (k,) and (k, n), optional
        Where to write the values and gradients (new device arrays otherwise).
    threads_per_block : int, optional
        A power of two; default :data:`THREADS_PER_BLOCK`.

    Returns
    -------
    f, G : numba device arrays in X's dtype
        The launch is asynchronous: the arrays are ready for later work on the same stream;
        ``copy_to_host()`` waits for them.
    """
    return _batch("rosenbrock", X, f, G, threads_per_block)


def rastrigin_batch(X, f=None, G=None, *, threads_per_block=None):
    r"""Values and gradients of the n-D Rastrigin function at the rows of ``X``, on the device.

    :math:`f(x) = \sum_i x_i^2 + A (1 - \cos 2\pi x_i)` with :math:`A = 10`, as
    :func:`adamnb.problems.functions.rastrigin`. Arguments and results as :func:`rosenbrock_batch`.
    """
    return _batch("rastrigin", X, f, G, threads_per_block)


class DeviceObjective:
    """``f, g = objective(x)`` for one device vector: a ``jac=True`` objective on the GPU.

    For :func:`adamnb.optimize._device.minimize_on_device` (or ``adamnb.minimize`` with a device
    ``x0``). ``f`` is a Python float; ``g`` a device vector in x's dtype, one of two buffers the
    objective alternates between (see the module notes), kept per (length, dtype).

    Parameters
    ----------
    name : {"rosenbrock", "rastrigin"}
    """

    def __init__(self, name):
        if name not in _DEFINITIONS:
            raise ValueError(f"Invalid objective: {name!r}; expected one of "
                             f"{sorted(_DEFINITIONS)}")
        self.name = name
        self._workspaces = {}

    def __repr__(self):
        return f"DeviceObjective({self.name!r})"

    def __call__(self, x):
        """The value (a float) and gradient (a device vector) at the device vector ``x``."""
        x = cuda_backend.check_device_vector(x, "x")
        n = x.size
        key = (n, np.dtype(x.dtype), _check_threads(None))
        if key not in self._workspaces:
            cuda = cuda_backend.numba_cuda()
            if len(self._workspaces) > 4:
                self._workspaces.clear()
            along, _ = _grid(1, max(n, 1), key[2])
            self._workspaces[key] = [[cuda.device_array((1, n), x.dtype) for _ in range(2)],
                                     cuda.device_array(1, x.dtype),
                                     cuda.device_array((1, along), x.dtype)]
        gradients, f, partials = self._workspaces[key]
        gradients.reverse()
        _batch(self.name, x.reshape((1, n)), f, gradients[0], key[2], partials)
        return float(f.copy_to_host()[0]), gradients[0].reshape(n)


#: Device objectives for ``minimize_on_device(..., jac=True)``.
rosenbrock = DeviceObjective("rosenbrock")
rastrigin = DeviceObjective("rastrigin")
OBJECTIVES = {"rosenbrock": rosenbrock, "rastrigin": rastrigin}


def kernel_ptx(name, dtype, threads_per_block=None, cc=(9, 0)):
    """PTX of ``name``'s kernels for ``dtype``: ``{"value_and_grad": ..., "row_sums": ...}``.

    Needs NVVM but no GPU; not in the simulator (see
    :func:`adamnb.backends.cuda.compile_kernel_ptx`).
    """
    from numba import from_dtype
    if name not in _DEFINITIONS:
        raise ValueError(f"Invalid objective: {name!r}; expected one of {sorted(_DEFINITIONS)}")
    scalar = from_dtype(np.dtype(dtype))
    tpb = _check_threads(threads_per_block)
    return {
        "value_and_grad": cuda_backend.compile_kernel_ptx(
            _value_and_grad_function(name, tpb, dtype),
            (scalar[:, ::1], scalar[:, ::1], scalar[:, ::1]), cc),
        "row_sums": cuda_backend.compile_kernel_ptx(
            _row_sums_function(), (scalar[:, ::1], scalar[::1]), cc),
    }
