"""NumPy neural networks on one flat parameter vector: Sequential models, MLPs, softmax regression.

Every parameter of a model lives in one contiguous 1-D array (float32 by default), and each layer's
kernel and bias are views into it. One optimizer call (``Adam().step(params, grad)``) or one
``minimize`` step therefore updates the whole model with a single kernel launch, and the gradient
is written into one flat buffer of the same layout.

Models
    :class:`Sequential` stacks the layers of :mod:`adamnb.nn.layers` (:class:`~adamnb.nn.layers.Dense`,
    :class:`~adamnb.nn.layers.Conv2D`, :class:`~adamnb.nn.layers.MaxPool2D`,
    :class:`~adamnb.nn.layers.Dropout`, :class:`~adamnb.nn.layers.Flatten`) the way Keras's
    ``Sequential`` does; the last layer is a Dense layer whose outputs are the logits, and the
    loss is softmax cross-entropy. :class:`MLP` (ReLU hidden layers, dropout) and
    :class:`SoftmaxRegression` are Sequential models; :func:`keras_mnist_cnn` builds the CNN of
    the well-known Keras MNIST article.

Layout
    The weight layers in order, each its kernel (row-major; Dense ``(fan_in, units)``, Conv2D
    ``(kh, kw, in_channels, filters)``) followed by its bias. For an MLP with ``sizes = (n_0,
    ..., n_L)`` layer ``k`` maps ``n_{k-1}`` inputs to ``n_k`` outputs with :math:`W_k` of shape
    ``(n_{k-1}, n_k)`` and :math:`b_k` of length ``n_k``.

Objective
    With the network's logits :math:`z` on a batch of :math:`B` rows (dropout masks drawn in
    training, none in evaluation):

    .. math::

        f = \\frac{1}{B} \\sum_{i=1}^{B} \\Big(\\log \\sum_c e^{z_{ic}} - z_{i y_i}\\Big)
            + \\frac{\\lambda}{2} \\sum_k \\lVert W_k \\rVert_F^2

    (mean cross-entropy over the batch plus L2 on the kernels, not the biases). For the MLP,

    .. math::

        a_0 = X \\odot D_0, \\quad
        a_k = \\operatorname{relu}(a_{k-1} W_k + b_k) \\odot D_k \\ (0 < k < L), \\quad
        z = a_{L-1} W_L + b_L,

    with the inverted-dropout masks :math:`D_k` (entries :math:`1/(1-p)` with probability
    :math:`1-p`, else 0). The gradient is the usual backward pass:
    :math:`\\delta_L = (\\operatorname{softmax}(z) - Y)/B`,
    :math:`\\nabla W_k = a_{k-1}^\\top \\delta_k + \\lambda W_k`,
    :math:`\\nabla b_k = \\mathbf 1^\\top \\delta_k`, and
    :math:`\\delta_{k} = (\\delta_{k+1} W_{k+1}^\\top) \\odot [a_k > 0] / (1-p)`, where
    :math:`a_k > 0` exactly when the unit was active and kept. The convolution's passes are in
    :mod:`adamnb.nn.layers`.

Speed
    The matrix products are NumPy's (the BLAS), written straight into preallocated buffers and
    into the flat gradient through ``out=``; bias, activation, dropout and their derivatives are
    fused numba loops over the element functions of :mod:`adamnb.nn.elements` (the GPU runs the
    same functions); the convolution is a direct numba kernel (:mod:`adamnb.nn.layers`). These
    kernels are serial: the BLAS threads own the cores, and numba's threads would compete with
    them (see :mod:`adamnb.nn.training`).

Threads
    A model can be shared between threads (Dask's threaded workers, a thread pool): every call
    takes its scratch buffers from a :class:`adamnb.nn.workspace.WorkspacePool` for its duration,
    and a training call reserves its call number (which selects its dropout masks) under a lock.
    Concurrent calls therefore return what the same calls return one after another; concurrent
    training calls get distinct call numbers, in the order they reserve them.

Randomness
    Dropout masks come from :mod:`adamnb.backends.random`: the mask entry of row ``r``, unit
    ``j`` (the flat index within the row, memory order) behind weight layer ``k`` (0 for the
    inputs) at training call ``s`` is a pure function of ``(seed, s, k, r * n_k + j)``. The same
    seed gives the same masks whatever the number of threads, and the CUDA kernels draw the same
    masks. Initialisation is seeded too (:meth:`Sequential.init`).

Example
-------
>>> import numpy as np
>>> from adamnb.nn import MLP
>>> model = MLP((4, 8, 3), dropout=0.5, seed=0)
>>> params = model.init(seed=1)
>>> X = np.random.default_rng(2).random((5, 4), dtype=np.float32); y = np.array([0, 1, 2, 1, 0])
>>> f, g = model.loss_and_grad(params, X, y)
>>> g.shape == params.shape == (model.n_params,) == (4 * 8 + 8 + 8 * 3 + 3,)
True
"""

import math
import threading

import numpy as np

from adamnb.backends.random import stream_key
from adamnb.nn.layers import (CPU_OPS, Conv2D, ConvBlock, Dense, DenseBlock, Dropout, Flatten,
                              InputDropoutBlock, Layer, MaxPool2D, glorot_limit)
from adamnb.nn.workspace import WorkspacePool

__all__ = ["Sequential", "MLP", "SoftmaxRegression", "keras_mnist_cnn", "EVALUATION_CHUNK"]

#: Rows per chunk when evaluating a whole dataset (bounds the activations' memory).
EVALUATION_CHUNK = 2000

_NO_KEY = np.uint64(0)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Invalid seed: {seed!r}; expected an integer")
    return int(seed)


class Sequential:
    """A stack of layers trained on one flat parameter vector, with a softmax cross-entropy loss.

    Parameters
    ----------
    layers : sequence of adamnb.nn.layers.Layer
        In order. The last is a :class:`~adamnb.nn.layers.Dense` layer without activation (or
        ``activation="softmax"``, the same: the softmax is part of the loss), with at least 2
        units (the classes). A :class:`~adamnb.nn.layers.Dropout` follows a weight layer (its
        activation, and for a Conv2D its pooling, come first) or is the first layer (dropout on
        the inputs); a :class:`~adamnb.nn.layers.MaxPool2D` directly follows a Conv2D; a Dense
        layer gets 1-D inputs (put a :class:`~adamnb.nn.layers.Flatten` after convolutions).
    input_shape : tuple of int
        One example's shape: ``(n_features,)``, or ``(height, width, channels)`` for images.
    l2 : float, default 0
        L2 penalty :math:`\\frac{\\lambda}{2}\\sum_k\\lVert W_k\\rVert^2` on the kernels (not the
        biases), part of the training objective.
    dtype : {numpy.float32, numpy.float64}, default float32
        Of the parameters, the gradient and all arithmetic of the passes.
    seed : int, default 0
        Seed of the dropout masks. Each training call (:meth:`loss_and_grad`) draws fresh masks
        from ``(seed, call number, layer)``; the call number is :attr:`training_calls`.

    Attributes
    ----------
    n_params : int
        Length of the flat parameter vector.
    layout : list of (slice, tuple, slice)
        Per weight layer: the kernel's slice of the flat vector, the kernel's shape, the bias's
        slice.
    training_calls : int
        Number of training calls so far (selects the next dropout masks); may be set.
    output_shape : tuple
        ``(n_classes,)``.

    Raises
    ------
    TypeError
        An entry of ``layers`` is not a Layer.
    ValueError
        Layers that do not fit together (the message says which and why), or an invalid
        ``l2``, ``dtype``, ``seed`` or ``input_shape``.

    See Also
    --------
    adamnb.nn.training.train : an epoch loop with a stateful optimizer.
    adamnb.nn.training.train_minimize : the same through :func:`adamnb.minimize`.
    """

    def __init__(self, layers, input_shape, *, l2=0.0, dtype=np.float32, seed=0):
        layers = tuple(layers)
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"layers must be adamnb.nn.layers.Layer objects, got "
                                f"{type(layer).__name__}")
        input_shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) \
            else tuple(input_shape)
        if not input_shape or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                  or s < 1 for s in input_shape):
            raise ValueError(f"Invalid input_shape: {input_shape!r}; expected positive integers")
        if not (isinstance(l2, (int, float, np.floating)) and l2 >= 0 and math.isfinite(l2)):
            raise ValueError(f"Invalid l2: {l2!r}; expected a finite number >= 0")
        dtype = np.dtype(dtype)
        if dtype.type not in (np.float32, np.float64):
            raise ValueError(f"Invalid dtype: {dtype}; expected float32 or float64")
        self.stack = layers
        self.input_shape = tuple(int(s) for s in input_shape)
        self.l2, self.dtype, self.seed = float(l2), dtype, _check_seed(seed)
        self.training_calls = 0
        self.blocks = _build_blocks(self.stack, self.input_shape, dtype)
        self.output_shape = self.blocks[-1].output_shape
        # Flat slices: each weight block's kernel-then-bias, in order.
        self._slices, self.layout = [], []
        offset = 0
        for block in self.blocks:
            n = getattr(block, "n_params", 0)
            self._slices.append(slice(offset, offset + n) if n else None)
            if n:
                kernel = slice(offset, offset + block.n_kernel)
                self.layout.append((kernel, block.kernel_shape, slice(kernel.stop, offset + n)))
            offset += n
        self.n_params = offset
        weight_blocks = [k for k, s in enumerate(self._slices) if s is not None]
        # A weight block needs its input's gradient when another weight block is below it.
        self._needs_d_in = [s is not None and k > weight_blocks[0]
                            for k, s in enumerate(self._slices)]
        self._pool = WorkspacePool(self._new_workspace)
        self._call_lock = threading.Lock()

    def __repr__(self):
        layers = ", ".join(map(repr, self.stack))
        return (f"Sequential([{layers}], input_shape={self.input_shape}, l2={self.l2}, "
                f"dtype={self.dtype.name}, seed={self.seed})")

    @property
    def n_classes(self):
        return self.output_shape[0]

    # -- parameters -----------------------------------------------------------------------------

    def layers(self, params):
        """The ``(kernel, bias)`` views of each weight layer into ``params`` (writes go through).

        Parameters
        ----------
        params : ndarray, shape (n_params,)

        Returns
        -------
        list of (ndarray, ndarray)
            Dense kernels ``(fan_in, units)``, Conv2D kernels ``(kh, kw, in_channels,
            filters)``, and the biases.
        """
        return self._views(self.check_params(params))

    def param_groups(self, **bias_options):
        """The usual parameter groups of the flat vector (:mod:`adamnb.optim.groups`), as a torch
        user splits a model's parameters: the kernels, and the biases with no weight decay.

        Each Dense kernel is a matrix view with torch's ``nn.Linear`` weight shape ``(units,
        fan_in)`` (the kernel ``(fan_in, units)`` in row order is that matrix in column order,
        ``"F"``), so Muon and Adafactor's factored moments see it as torch does. Conv2D kernels
        (torch's 4-D weights, which torch's Muon refuses) form a group of plain slices of their
        own, and the biases another. Give the result to any optimizer class or to ``minimize``'s
        ``groups`` option: ``adamnb.AdamW(model.param_groups(), lr=1e-3, weight_decay=0.01)``.

        Parameters
        ----------
        **bias_options
            The biases' group options (default ``weight_decay=0.0``), e.g. ``method="adamw"``
            for Muon's non-matrix groups.

        Returns
        -------
        list of dict
            ``[{"params": [(start, stop, (units, fan_in), "F"), ...]}, ({"params": [conv
            kernel slices]},) {"params": [bias slices], "weight_decay": 0.0, ...}]``, covering
            every element of the vector once.
        """
        dense, conv, biases = [], [], []
        for kernel, shape, bias in self.layout:
            if len(shape) == 2:
                dense.append((kernel.start, kernel.stop, (int(shape[1]), int(shape[0])), "F"))
            else:
                conv.append((kernel.start, kernel.stop))
            biases.append((bias.start, bias.stop))
        groups = [{"params": views} for views in (dense, conv) if views]
        groups.append({"params": biases, "weight_decay": 0.0, **bias_options})
        return groups

    def init(self, seed=None):
        """A new parameter vector: Glorot-uniform kernels, zero biases (Keras's defaults).

        :math:`W_k \\sim U(-r, r)` with :math:`r = \\sqrt{6/(n_{in}+n_{out})}` (Glorot & Bengio
        2010; for a Conv2D kernel the fans are the receptive field times the input and output
        channels, as Keras computes them), drawn in float64 from ``numpy.random.default_rng(seed)``
        layer by layer, so a seed gives the same vector on every machine.

        Parameters
        ----------
        seed : int or None

        Returns
        -------
        ndarray, shape (n_params,), the model's dtype
        """
        rng = np.random.default_rng(seed)
        params = np.zeros(self.n_params, dtype=self.dtype)
        blocks = [block for block in self.blocks if getattr(block, "n_params", 0)]
        for block, (W, _) in zip(blocks, self.layers(params)):
            limit = glorot_limit(*block.layer.fans(block.input_shape))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        return params

    def check_params(self, params):
        """``params`` if it is this model's contiguous flat vector of its dtype, else ValueError."""
        if not isinstance(params, np.ndarray) or params.ndim != 1 \
                or params.size != self.n_params:
            shape = getattr(params, "shape", None)
            raise ValueError(f"params must be a flat array of {self.n_params} values for "
                             f"{self!r}, got shape {shape}")
        if params.dtype != self.dtype:
            raise ValueError(f"params has dtype {params.dtype}, this model computes in "
                             f"{self.dtype}; create it with model.init() or .astype()")
        if not params.flags.c_contiguous:
            raise ValueError("params must be contiguous")
        return params

    def check_data(self, X, y):
        """``(X, y)`` checked and as the passes need them: X contiguous in the model's dtype with
        shape ``(n, *input_shape)`` (rows of ``prod(input_shape)`` values are reshaped, e.g. MNIST
        rows of 784 pixels for a 28x28x1 input), y integer labels in ``0 .. n_classes-1``
        (``y=None`` skips the labels). Raises ValueError naming the problem."""
        X = np.asarray(X)
        if X.ndim == 2 and len(self.input_shape) > 1 \
                and X.shape[1] == math.prod(self.input_shape):
            X = X.reshape(len(X), *self.input_shape)
        if X.shape[1:] != self.input_shape:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"X must have shape (n, {expected}), got {X.shape}")
        if X.dtype != self.dtype or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=self.dtype)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (X.shape[0],) or y.dtype.kind not in "iu":
                raise ValueError(f"y must be {X.shape[0]} integer labels, got {y.dtype} "
                                 f"array of shape {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise ValueError(f"labels must lie in 0 .. {self.n_classes - 1}; got "
                                 f"{y.min()} .. {y.max()}")
        return X, y

    # -- forward and backward -------------------------------------------------------------------
    # Written once for both devices: the blocks run through `ops`, CPU_OPS for NumPy arrays or a
    # CudaOps (adamnb.nn.cuda_ops) for device arrays; see _resolve_ops.

    def _resolve_ops(self, params, ops):
        if ops is not None:
            return ops
        if isinstance(params, np.ndarray):
            return CPU_OPS
        from adamnb.backends.cuda import is_device_array
        if not is_device_array(params):
            return CPU_OPS  # whose checks explain what params should be
        from adamnb.nn.cuda_ops import CudaOps  # imports numba.cuda: only for device arrays
        return CudaOps()

    def _new_workspace(self, key):
        ops, rows, gradient = key
        work = [block.buffers(ops, rows, gradient) for block in self.blocks]
        for block, buffers, needs in zip(self.blocks, work, self._needs_d_in):
            if gradient and needs:
                buffers["d_in"] = ops.empty((rows, *block.input_shape), self.dtype)
        softmax = {"losses": ops.empty(rows, ops.loss_dtype(self.dtype)),
                   "correct": ops.empty(rows, np.int32),
                   "reductions": ops.reductions(self.dtype)}
        return work, softmax

    def _workspace(self, ops, rows, gradient):
        return self._pool.take((ops, rows, gradient))

    def _reserve_call(self):
        """The number of this training call (its dropout masks); thread-safe."""
        with self._call_lock:
            call = self.training_calls
            self.training_calls = call + 1
        return call

    def _keys(self, training, call):
        return [stream_key(self.seed, call, block.stream)
                if training and getattr(block, "rate", 0) > 0 else _NO_KEY
                for block in self.blocks]

    def _run(self, ops, params, X, workspace, keys, training):
        """The blocks' forward passes; returns each block's input and the last block's output
        (the logits before their bias)."""
        work, _ = workspace
        inputs, a = [], X
        for block, buffers, where, key in zip(self.blocks, work, self._slices, keys):
            inputs.append(a)
            a = block.forward(ops, None if where is None else params[where], a, buffers,
                              training, key)
        return inputs, a

    def _softmax(self, ops, params, logits, y, workspace, gradient):
        """Bias, per-row loss and correctness; returns (summed loss, number correct)."""
        _, softmax = workspace
        rows = logits.shape[0]
        losses, correct = softmax["losses"], softmax["correct"]
        bias = params[self.layout[-1][2]]
        inverse_rows = self.dtype.type(1.0) / self.dtype.type(rows)
        ops.loop("softmax_cross_entropy_row", (rows,), logits, bias, y, losses, correct,
                 inverse_rows, bool(gradient))
        total = ops.total(losses, softmax["reductions"])
        if math.isnan(total):
            ops.explain_nan(y, self.n_classes)
        return total, softmax

    def _penalty(self, ops, params, reductions):
        return 0.5 * self.l2 * sum(ops.sum_of_squares(W, reductions)
                                   for W, _ in self._views(params))

    def _views(self, params):
        return [(params[w].reshape(shape), params[b]) for w, shape, b in self.layout]

    def loss_and_grad(self, params, X, y, out=None, *, ops=None):
        """Training objective and its gradient on the batch ``(X, y)``, with fresh dropout masks.

        Parameters
        ----------
        params : ndarray or CUDA device array, shape (n_params,), the model's dtype
        X : array_like, shape (batch,) + input_shape
            On the device (a contiguous array of the model's dtype) when ``params`` is.
        y : array_like of int, shape (batch,)
        out : array like ``params``, optional
            Where to write the gradient (no allocation); a new array otherwise.
        ops : optional
            The primitives that run the passes; by default those of ``params``' device: the CPU's
            for NumPy arrays, :class:`adamnb.nn.cuda_ops.CudaOps` for device arrays (Dense and
            Dropout layers only).

        Returns
        -------
        f : float
            Mean cross-entropy of the batch plus the L2 penalty.
        g : ndarray or device array
            The gradient, laid out like ``params`` (``out`` when given).

        Raises
        ------
        ValueError
            Bad shapes, dtypes or labels, an empty batch, or ``out`` not a separate contiguous
            array like ``params``.
        TypeError
            Host and device arrays mixed.
        """
        ops = self._resolve_ops(params, ops)
        params = ops.check_params(self, params)
        X, y = ops.check_data(self, X, y)
        if X.shape[0] == 0:
            raise ValueError("the batch is empty")
        out = ops.check_out(self, params, out)
        keys = self._keys(True, self._reserve_call())
        with self._workspace(ops, X.shape[0], True) as workspace:
            inputs, logits = self._run(ops, params, X, workspace, keys, training=True)
            total, softmax = self._softmax(ops, params, logits, y, workspace, gradient=True)
            work, _ = workspace
            delta = logits  # (softmax - onehot) / B, written by the softmax
            for k in range(len(self.blocks) - 1, -1, -1):
                where = self._slices[k]
                if where is None:
                    break  # the input dropout: nothing to learn below
                d_in = work[k].get("d_in")
                self.blocks[k].backward(ops, params[where], out[where], inputs[k], work[k],
                                        delta, d_in, keys[k])
                if d_in is None:
                    break
                delta = d_in
            f = total / X.shape[0]
            if self.l2 > 0:
                for (W, _), (gW, _) in zip(self._views(params), self._views(out)):
                    f += 0.5 * self.l2 * ops.sum_of_squares(W, softmax["reductions"])
                    ops.add_scaled(gW, W, self.dtype.type(self.l2))
        return float(f), out

    def loss(self, params, X, y, training=False, *, ops=None):
        """The objective on ``(X, y)``: mean cross-entropy plus the L2 penalty.

        Without dropout by default (``training=False``); ``training=True`` draws the next dropout
        masks (and counts as a training call), as :meth:`loss_and_grad` does. Arrays and ``ops``
        as in :meth:`loss_and_grad`.

        Returns
        -------
        float
        """
        ops = self._resolve_ops(params, ops)
        params = ops.check_params(self, params)
        X, y = ops.check_data(self, X, y)
        if X.shape[0] == 0:
            raise ValueError("the batch is empty")
        if training:
            keys = self._keys(True, self._reserve_call())
            with self._workspace(ops, X.shape[0], False) as workspace:
                _, logits = self._run(ops, params, X, workspace, keys, training=True)
                total, _ = self._softmax(ops, params, logits, y, workspace, gradient=False)
            f = total / X.shape[0]
        else:
            f = self.evaluate(params, X, y, ops=ops)[0]
        if self.l2 > 0:
            with self._workspace(ops, 1, False) as (_, softmax):
                f += self._penalty(ops, params, softmax["reductions"])
        return float(f)

    def evaluate(self, params, X, y, *, ops=None):
        """Mean cross-entropy (without the L2 penalty) and accuracy on ``(X, y)``, no dropout.

        Rows are processed :data:`EVALUATION_CHUNK` at a time. A row whose logits are all NaN is
        never counted as correct. Arrays and ``ops`` as in :meth:`loss_and_grad`.

        Returns
        -------
        loss : float
        accuracy : float
            Fraction of rows whose largest logit is the label.
        """
        ops = self._resolve_ops(params, ops)
        params = ops.check_params(self, params)
        X, y = ops.check_data(self, X, y)
        n = X.shape[0]
        if n == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        total, correct = 0.0, 0
        keys = self._keys(False, 0)
        for start in range(0, n, EVALUATION_CHUNK):
            stop = min(start + EVALUATION_CHUNK, n)
            Xc, yc = X[start:stop], y[start:stop]
            with self._workspace(ops, stop - start, False) as workspace:
                _, logits = self._run(ops, params, Xc, workspace, keys, training=False)
                chunk_total, softmax = self._softmax(ops, params, logits, yc, workspace,
                                                     gradient=False)
                chunk_correct = ops.count(softmax["correct"], softmax["reductions"])
            total += chunk_total
            correct += chunk_correct
        return total / n, correct / n

    def activations(self, params, X, call=None, *, ops=None):
        """The output of every block (layer with its activation, pooling and dropout), as host
        copies.

        Parameters
        ----------
        params : ndarray or device array, shape (n_params,)
        X : array_like, shape (n,) + input_shape
        call : int, optional
            With the dropout masks of training call ``call`` (the model's counter is not
            changed); without dropout when None.
        ops : optional
            As in :meth:`loss_and_grad`.

        Returns
        -------
        list of ndarray
            One per block: the dropped inputs (when the first layer is a Dropout), then each
            weight layer's output; the last is the logits.
        """
        ops = self._resolve_ops(params, ops)
        params = ops.check_params(self, params)
        X, _ = ops.check_data(self, X, None)
        training = call is not None
        keys = self._keys(training, call if training else 0)
        with self._workspace(ops, X.shape[0], False) as workspace:
            inputs, logits = self._run(ops, params, X, workspace, keys, training)
            outputs = [ops.to_host(a) for a in inputs[1:]]
            outputs.append(ops.to_host(logits) + ops.to_host(params[self.layout[-1][2]]))
        return outputs

    def logits(self, params, X):
        """The last layer's pre-softmax values, no dropout; shape (n, n_classes). CPU arrays."""
        self.check_params(params)
        X, _ = self.check_data(X, None)
        result = np.empty((X.shape[0], self.n_classes), self.dtype)
        bias = params[self.layout[-1][2]]
        keys = self._keys(False, 0)
        for start in range(0, X.shape[0], EVALUATION_CHUNK):
            rows = slice(start, start + EVALUATION_CHUNK)
            Xc = X[rows]
            with self._workspace(CPU_OPS, Xc.shape[0], False) as workspace:
                _, z = self._run(CPU_OPS, params, Xc, workspace, keys, training=False)
                np.add(z, bias, out=result[rows])
        return result

    def predict(self, params, X):
        """The most probable class of each row of ``X`` (CPU arrays)."""
        return np.argmax(self.logits(params, X), axis=1)


def _build_blocks(layers, input_shape, dtype):
    """Group the layers into blocks (see :mod:`adamnb.nn.layers`); ValueError if they don't fit."""
    if not layers or not isinstance(layers[-1], Dense):
        raise ValueError("the last layer must be a Dense layer: its outputs are the logits, so "
                         "nothing may follow it")
    last = layers[-1]
    if last.activation == "relu":
        raise ValueError("the last Dense layer gives the logits: use activation=None (or "
                         "'softmax'; the softmax is part of the cross-entropy loss)")
    if last.units < 2:
        raise ValueError(f"the last Dense layer has {last.units} unit(s); the output needs >= 2 "
                         "classes")
    groups, shape = [], tuple(input_shape)  # group: [weight layer or None, pool, rate]
    for position, layer in enumerate(layers):
        where = f"layer {position} ({type(layer).__name__})"
        if isinstance(layer, Flatten):
            shape = layer.output_shape(shape)
        elif isinstance(layer, Dropout):
            if not groups:
                groups.append([None, 1, layer.rate])
            elif groups[-1][2] is not None:
                raise ValueError(f"{where}: a Dropout must follow a weight layer (or be first); "
                                 "two Dropouts in a row: merge them")
            else:
                groups[-1][2] = layer.rate
        elif isinstance(layer, MaxPool2D):
            if not groups or not isinstance(groups[-1][0], Conv2D) or groups[-1][1] != 1 \
                    or groups[-1][2] is not None or len(shape) != 3:
                raise ValueError(f"{where}: a MaxPool2D must directly follow a Conv2D")
            groups[-1][1] = layer.pool_size
            shape = layer.output_shape(shape)
        elif isinstance(layer, (Dense, Conv2D)):
            if layer.activation == "softmax" and layer is not last:
                raise ValueError(f"{where}: only the last Dense layer may have the softmax")
            try:
                shape = layer.output_shape(shape)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            groups.append([layer, 1, None])
        else:
            raise TypeError(f"{where}: unknown layer type")
    if groups[-1][0] is not last or groups[-1][2] is not None:
        raise ValueError("the last Dense layer gives the logits: nothing may follow it")
    blocks, shape, weight_layers = [], tuple(input_shape), 0
    for layer, pool, rate in groups:
        rate = rate or 0.0
        if layer is None:
            blocks.append(InputDropoutBlock(rate, shape, dtype))
        elif isinstance(layer, Conv2D):
            weight_layers += 1
            blocks.append(ConvBlock(layer, pool, rate, weight_layers, shape, dtype))
        else:
            weight_layers += 1
            blocks.append(DenseBlock(layer, rate, weight_layers, shape, dtype, layer is last))
        shape = blocks[-1].output_shape
    return blocks


class MLP(Sequential):
    """A multilayer perceptron (ReLU hidden layers, softmax output) on one flat parameter vector.

    The :class:`Sequential` model ``[Dropout(input_dropout), Dense(n_1, "relu"), Dropout(dropout),
    ..., Dense(n_classes)]`` (the Dropouts only where their rate is positive).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``(n_inputs, hidden..., n_classes)``; ``(784, 10)`` is softmax regression,
        ``(784, 1000, 1000, 10)`` Kingma & Ba's MNIST network. At least two entries, each >= 1
        (and n_classes >= 2).
    dropout : float, default 0
        Probability of dropping each hidden unit during training (inverted dropout: kept units
        are scaled by ``1/(1-dropout)``, so evaluation uses the weights as they are).
    input_dropout : float, default 0
        Probability of dropping each input during training.
    l2 : float, default 0
        L2 penalty :math:`\\frac{\\lambda}{2}\\sum_k\\lVert W_k\\rVert^2` on the weights (not the
        biases), part of the training objective.
    dtype : {numpy.float32, numpy.float64}, default float32
        Of the parameters, the gradient and all arithmetic of the matrix products.
    seed : int, default 0
        Seed of the dropout masks. Each training call (:meth:`loss_and_grad`) draws fresh masks
        from ``(seed, call number, layer)``; the call number is :attr:`training_calls`.

    Raises
    ------
    ValueError
        Invalid sizes, dropout rates, ``l2``, ``dtype`` or ``seed``.
    """

    def __init__(self, sizes=(784, 1000, 1000, 10), *, dropout=0.0, input_dropout=0.0, l2=0.0,
                 dtype=np.float32, seed=0):
        sizes = tuple(sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                 or s < 1 for s in sizes):
            raise ValueError(f"Invalid sizes: {sizes!r}; expected at least two positive integers "
                             "(n_inputs, hidden..., n_classes)")
        if sizes[-1] < 2:
            raise ValueError(f"Invalid sizes: {sizes!r}; the output layer needs >= 2 classes")
        for name, value in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not (isinstance(value, (int, float, np.floating)) and 0 <= value < 1):
                raise ValueError(f"Invalid {name}: {value!r}; expected a probability in [0, 1)")
        layers = [Dropout(input_dropout)] if input_dropout > 0 else []
        for width in sizes[1:-1]:
            layers.append(Dense(width, "relu"))
            if dropout > 0:
                layers.append(Dropout(dropout))
        layers.append(Dense(sizes[-1]))
        super().__init__(layers, (sizes[0],), l2=l2, dtype=dtype, seed=_check_seed(seed))
        self.sizes = tuple(int(s) for s in sizes)
        self.dropout, self.input_dropout = float(dropout), float(input_dropout)

    @property
    def n_layers(self):
        """Number of weight layers (1 for softmax regression)."""
        return len(self.sizes) - 1

    def __repr__(self):
        return (f"{type(self).__name__}(sizes={self.sizes}, dropout={self.dropout}, "
                f"input_dropout={self.input_dropout}, l2={self.l2}, dtype={self.dtype.name}, "
                f"seed={self.seed})")


class SoftmaxRegression(MLP):
    """Softmax (multinomial logistic) regression: the :class:`MLP` without hidden layers.

    Parameters
    ----------
    n_features : int, default 784
    n_classes : int, default 10
    l2 : float, default 0
        L2 penalty on the weights, :math:`\\frac{\\lambda}{2}\\lVert W\\rVert^2`.
    dtype : {numpy.float32, numpy.float64}, default float32
    """

    def __init__(self, n_features=784, n_classes=10, *, l2=0.0, dtype=np.float32):
        super().__init__((n_features, n_classes), l2=l2, dtype=dtype)

    def __repr__(self):
        return (f"SoftmaxRegression(n_features={self.sizes[0]}, n_classes={self.sizes[1]}, "
                f"l2={self.l2}, dtype={self.dtype.name})")


def keras_mnist_cnn(seed=0, *, dtype=np.float32):
    """The CNN of the Keras MNIST optimizer article, as a :class:`Sequential` model.

    ``Conv2D(32, 3x3, relu)`` on 28x28x1 inputs -> ``MaxPool2D(2x2)`` -> ``Dropout(0.25)`` ->
    ``Flatten`` -> ``Dense(256, relu)`` -> ``Dropout(0.5)`` -> ``Dense(10)`` with softmax
    cross-entropy: 1,387,594 parameters (320 in the convolution, 1,384,704 in the hidden Dense
    layer, 2,570 in the output layer). Initialise with :meth:`Sequential.init` (Glorot
    uniform kernels, zero biases, as Keras).

    Parameters
    ----------
    seed : int, default 0
        Seed of the dropout masks.
    dtype : {numpy.float32, numpy.float64}, default float32

    Returns
    -------
    Sequential
        Takes images as ``(n, 28, 28, 1)`` or MNIST rows ``(n, 784)``.
    """
    return Sequential([Conv2D(32, (3, 3), activation="relu"), MaxPool2D(2), Dropout(0.25),
                       Flatten(), Dense(256, activation="relu"), Dropout(0.5),
                       Dense(10, activation="softmax")],
                      input_shape=(28, 28, 1), dtype=dtype, seed=seed)
