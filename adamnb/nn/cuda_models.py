r"""The MLP of :mod:`adamnb.nn` on the GPU: its passes on device arrays and a training loop.

There is no GPU copy of the model here: :class:`adamnb.nn.Sequential`'s forward and backward
passes run unchanged on CUDA device arrays with the GPU's primitives
(:class:`adamnb.nn.cuda_ops.CudaOps`: the element functions of :mod:`adamnb.nn.elements` in
grid-stride kernels, a tiled matrix product, device reductions). This module adds

* :class:`CudaMLP`, which runs an :class:`adamnb.nn.MLP`'s ``loss_and_grad``, ``loss``,
  ``evaluate`` and ``activations`` on device arrays with chosen tile and block sizes;
* :class:`DeviceBatches`, minibatches gathered on the device from data uploaded once;
* :func:`train_cuda`, :func:`adamnb.nn.training.run_epochs` (the loop :func:`adamnb.nn.train`
  runs) over :class:`DeviceBatches`;
* :func:`kernel_ptx`, every kernel's PTX (no GPU needed), for the tests.

Same model, same layout, same dropout masks (``uniform_at(stream_key(seed, s, k), r * n_k + j)``,
the same function of the same indices) and the same ``training_calls`` counter as on the CPU: CPU
and GPU calls can be interleaved and still draw the masks a single-device run would. Numerics:
see :mod:`adamnb.nn.cuda_ops`.

``numba.cuda`` is imported only when a :class:`CudaMLP` is created.
"""

import numpy as np

from adamnb.backends import cuda as cuda_backend
from adamnb.nn.cuda_ops import CudaOps, element_signatures
from adamnb.nn.elements import ELEMENTS
from adamnb.nn.models import MLP
from adamnb.nn.training import check_run, run_epochs
from adamnb.optimize.stochastic import minibatches

__all__ = ["CudaMLP", "DeviceBatches", "train_cuda", "gather_rows", "kernel_ptx", "GEMM_LAYOUTS"]

#: The matrix products the passes use, as (transpose A, transpose B): ``a @ W`` (forward),
#: ``a.T @ delta`` (weight gradients) and ``delta @ W.T`` (backpropagation).
GEMM_LAYOUTS = {"gemm_nn": (False, False), "gemm_tn": (True, False), "gemm_nt": (False, True)}


class CudaMLP:
    """An :class:`adamnb.nn.MLP`'s objective, gradient and evaluation on CUDA device arrays.

    Parameters
    ----------
    model : adamnb.nn.MLP
        Read at every call; :meth:`loss_and_grad` advances its ``training_calls``, exactly as
        ``model.loss_and_grad`` does.
    tile : int, optional
        Tile side of the matrix products (``tile * tile`` threads per block, at most 1024).
    threads_per_block : int, optional
        Of the element kernels and reductions (a power of two).

    Raises
    ------
    TypeError
        ``model`` is not an MLP.
    RuntimeError
        CUDA is unavailable.
    ValueError
        Invalid ``tile`` or ``threads_per_block``.

    Notes
    -----
    Parameters, gradients and data are device arrays (numba device arrays or objects with
    ``__cuda_array_interface__``); host arrays raise TypeError, since nothing is copied behind
    the caller's back (:func:`train_cuda` uploads host data once). Labels are integer device
    vectors (int64 is what :func:`train_cuda` uploads). ``model.loss_and_grad`` etc. accept
    device arrays directly too (default tile and block sizes).
    """

    def __init__(self, model, *, tile=None, threads_per_block=None):
        if not isinstance(model, MLP):
            raise TypeError(f"CudaMLP wraps an adamnb.nn.MLP, got {type(model).__name__}")
        cuda_backend.require_available("CudaMLP")
        self.model = model
        self.ops = CudaOps(tile, threads_per_block)

    def __repr__(self):
        return f"CudaMLP({self.model!r}, tile={self.ops.tile})"

    @property
    def dtype(self):
        return self.model.dtype

    def layers(self, params):
        """The ``(W, b)`` device views of each layer into ``params`` (writes go through)."""
        params = self.ops.check_params(self.model, params)
        return [(params[w].reshape(shape), params[b]) for w, shape, b in self.model.layout]

    def loss_and_grad(self, params, X, y, out=None):
        """:meth:`adamnb.nn.Sequential.loss_and_grad` on device arrays; one scalar comes back."""
        return self.model.loss_and_grad(params, X, y, out, ops=self.ops)

    def loss(self, params, X, y, training=False):
        """:meth:`adamnb.nn.Sequential.loss` on device arrays."""
        return self.model.loss(params, X, y, training, ops=self.ops)

    def evaluate(self, params, X, y):
        """:meth:`adamnb.nn.Sequential.evaluate` on device arrays (in chunks, as on the CPU)."""
        return self.model.evaluate(params, X, y, ops=self.ops)

    def activations(self, params, X, call=None):
        """:meth:`adamnb.nn.Sequential.activations` on device arrays (host copies returned)."""
        return self.model.activations(params, X, call, ops=self.ops)


def gather_rows(X, y, rows, Xb, yb, ops=None):
    """``Xb[r] = X[rows[r]]`` and ``yb[r] = y[rows[r]]`` on the device (``rows`` int64)."""
    ops = CudaOps() if ops is None else ops
    ops.loop("gather_rows", tuple(Xb.shape), X, Xb, rows)
    ops.loop("gather_labels", (yb.shape[0],), y, yb, rows)


class DeviceBatches:
    """Minibatches gathered on the device, as a batch source of
    :func:`adamnb.nn.training.run_epochs`.

    The rows of each batch are those of :func:`adamnb.minibatches` with the same seed (the same
    iterator drawn over row numbers), so a device run sees the CPU run's batches, batch for
    batch. The epoch's row order is uploaded once per epoch; each step gathers its rows into
    preallocated device buffers.

    Parameters
    ----------
    X, y : device arrays
        All the training data, ``(n, n_inputs)`` and int64 ``(n,)``.
    batch_size, seed : int
    ops : CudaOps
    """

    def __init__(self, X, y, batch_size, seed, ops):
        self.X, self.y, self.ops = X, y, ops
        self.n = X.shape[0]
        self._rows = minibatches(np.arange(self.n), batch_size=batch_size, seed=seed)
        self.steps_per_epoch = self._rows.batches_per_epoch
        width = min(int(batch_size), self.n)
        self._X = cuda_backend.device_empty((width, *X.shape[1:]), X.dtype)
        self._y = cuda_backend.device_empty(width, np.int64)
        self._step = 0
        self._order = None
        self._start = 0

    def __next__(self):
        if self._step % self.steps_per_epoch == 0:
            order = np.concatenate([next(self._rows)[0] for _ in range(self.steps_per_epoch)])
            self._order = cuda_backend.to_device(order.astype(np.int64))
            self._start = 0
        stop = min(self._start + self._X.shape[0], self.n)
        rows = self._order[self._start:stop]
        self._start = stop
        self._step += 1
        Xb, yb = self._X[:rows.size], self._y[:rows.size]
        gather_rows(self.X, self.y, rows, Xb, yb, self.ops)
        return Xb, yb

    @staticmethod
    def gradient_buffer(params):
        return cuda_backend.device_empty(params.shape, params.dtype)

    @staticmethod
    def synchronize():
        cuda_backend.synchronize()


def _to_device_data(model, X, y, name):
    """Validated device copies of host data (once), or device data as given."""
    if cuda_backend.is_device_array(X) or cuda_backend.is_device_array(y):
        if not (cuda_backend.is_device_array(X) and cuda_backend.is_device_array(y)):
            raise TypeError(f"{name}: give both inputs and labels on the device, or both on the "
                            "host")
        return cuda_backend.as_device_array(X, "X"), cuda_backend.as_device_array(y, "y")
    X, y = model.check_data(X, y)  # the model's host checks: shape, dtype, label range
    return (cuda_backend.to_device(X),
            cuda_backend.to_device(np.ascontiguousarray(y, dtype=np.int64)))


def train_cuda(model, params, optimizer, X, y, *, epochs, batch_size=128, X_test=None,
               y_test=None, seed=0, progress=None, tile=None, threads_per_block=None,
               evaluate_train=False):
    """Train ``model`` on the GPU with a stateful optimizer, updating ``params`` in place.

    :func:`adamnb.nn.training.run_epochs`, the loop of :func:`adamnb.nn.train`, with everything
    on the device: the same minibatches in the same order (:class:`DeviceBatches`), the same
    dropout masks, the same per-epoch :class:`adamnb.nn.training.History` records. Host data are
    uploaded once. One scalar, the batch's loss, comes back per step (and one per layer for the
    L2 penalty when ``model.l2 > 0``).

    Parameters
    ----------
    model : adamnb.nn.MLP
        Its ``training_calls`` advances by one per step, as with :func:`adamnb.nn.train`.
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
    evaluate_train : bool, default False
        Also record each epoch's ``train_cost`` on the whole training set without dropout, as
        :func:`adamnb.nn.training.train` does.
    tile, threads_per_block : int, optional
        As in :class:`CudaMLP`.

    Returns
    -------
    adamnb.nn.training.History
        Per-epoch ``train_loss``, ``test_loss``, ``test_accuracy``, ``seconds`` (the GPU work of
        the epoch included; the first epoch of a process also includes compiling the kernels,
        which are not cached on disk) and ``steps``. A non-finite training loss stops the run
        after its epoch.

    Raises
    ------
    ValueError
        An optimizer on the CPU, invalid ``epochs`` or ``batch_size``, data that do not fit.
    TypeError
        Host parameters, or inputs and labels on different devices.
    """
    cuda_model = CudaMLP(model, tile=tile, threads_per_block=threads_per_block)
    ops = cuda_model.ops
    params = ops.check_params(model, params)
    check_run(epochs, batch_size, X_test, y_test)
    if getattr(optimizer, "backend", None) in ("cpu", "parallel"):
        raise ValueError(f"the optimizer runs on the CPU (backend={optimizer.backend!r}); "
                         "train_cuda needs backend='cuda' or None")
    d_X, d_y = ops.check_data(model, *_to_device_data(model, X, y, "X, y"))
    d_X_test = d_y_test = None
    if X_test is not None:
        d_X_test, d_y_test = ops.check_data(
            model, *_to_device_data(model, X_test, y_test, "X_test, y_test"))
    if d_X.shape[0] == 0:
        raise ValueError("the training set is empty")
    batches = DeviceBatches(d_X, d_y, batch_size, seed, ops)
    return run_epochs(cuda_model, params, optimizer, batches, epochs=epochs, X_test=d_X_test,
                      y_test=d_y_test, progress=progress,
                      train_data=(d_X, d_y) if evaluate_train else None)


def kernel_ptx(dtype, tile=16, cc=(9, 0)):
    """The PTX of every kernel the GPU passes use for ``dtype``, as ``{name: text}``: the three
    matrix products (:data:`GEMM_LAYOUTS`) and each element's grid-stride kernel.

    Needs NVVM but no GPU; not in the simulator (see
    :func:`adamnb.backends.cuda.compile_kernel_ptx`).
    """
    from numba import from_dtype
    matrix = from_dtype(np.dtype(dtype))[:, ::1]
    ptx = {}
    for name, (trans_a, trans_b) in GEMM_LAYOUTS.items():
        source = cuda_backend.gemm_function(trans_a, trans_b, tile, dtype)
        ptx[name] = cuda_backend.compile_kernel_ptx(source, (matrix, matrix, matrix), cc)
    for name, signature in element_signatures(dtype).items():
        element, dimensions, arity = ELEMENTS[name]
        source = cuda_backend.elementwise_function(element, dimensions, arity)
        ptx[name] = cuda_backend.compile_kernel_ptx(source, signature, cc)
    return ptx
