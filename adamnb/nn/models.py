"""NumPy neural networks on one flat parameter vector: softmax regression and MLPs.

Every parameter of a model lives in one contiguous 1-D array (float32 by default), and each layer's
weights and biases are views into it. One optimizer call (``Adam().step(params, grad)``) or one
``minimize`` step therefore updates the whole model with a single kernel launch, and the gradient
is written into one flat buffer of the same layout.

Layout
    For ``sizes = (n_0, n_1, ..., n_L)`` layer ``k`` (1-based) maps ``n_{k-1}`` inputs to ``n_k``
    outputs with a weight matrix :math:`W_k` of shape ``(n_{k-1}, n_k)`` (row-major) followed by a
    bias :math:`b_k` of length ``n_k``; the layers follow each other in order. ``sizes=(784, 10)``
    is softmax (multinomial logistic) regression.

Model
    .. math::

        a_0 = X \\odot D_0, \\quad
        a_k = \\operatorname{relu}(a_{k-1} W_k + b_k) \\odot D_k \\ (0 < k < L), \\quad
        z_L = a_{L-1} W_L + b_L,

    with the inverted-dropout masks :math:`D_k` (entries :math:`1/(1-p)` with probability
    :math:`1-p`, else 0; all ones when evaluating), and the objective

    .. math::

        f = \\frac{1}{B} \\sum_{i=1}^{B} \\Big(\\log \\sum_c e^{z_{L,ic}} - z_{L,i y_i}\\Big)
            + \\frac{\\lambda}{2} \\sum_k \\lVert W_k \\rVert_F^2

    (mean cross-entropy over the batch plus L2 on the weights, not the biases). The gradient is
    the usual backward pass: :math:`\\delta_L = (\\operatorname{softmax}(z_L) - Y)/B`,
    :math:`\\nabla W_k = a_{k-1}^\\top \\delta_k + \\lambda W_k`,
    :math:`\\nabla b_k = \\mathbf 1^\\top \\delta_k`, and
    :math:`\\delta_{k} = (\\delta_{k+1} W_{k+1}^\\top) \\odot [a_k > 0] / (1-p)`, where
    :math:`a_k > 0` exactly when the unit was active and kept.

Speed
    The matrix products are NumPy's (the BLAS), written straight into the flat gradient through
    ``out=``; bias, ReLU, dropout and their derivatives are fused numba kernels over preallocated
    buffers, so a training step allocates nothing of the batch's size. These kernels are serial: the
    BLAS threads own the cores, and numba's threads would compete with them (see
    :mod:`adamnb.nn.training`); they are a small part of a step.

Randomness
    Dropout masks come from :mod:`adamnb.backends.random`: the mask entry of row ``r``, unit ``j`` in layer
    ``k`` at training call ``s`` is a pure function of ``(seed, s, k, r * n_k + j)``. The same seed
    gives the same masks whatever the number of threads, and the CUDA kernels can draw the same
    masks. Initialisation is seeded too (:meth:`MLP.init`).

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

import numpy as np

from adamnb.backends.jit import jit
from adamnb.backends.random import stream_key, uniform_at

__all__ = ["MLP", "SoftmaxRegression"]

#: Rows per chunk when evaluating a whole dataset (bounds the activations' memory).
EVALUATION_CHUNK = 2000


@jit
def _bias_relu_dropout(z, b, key, drop, scale):
    """z <- relu(z + b), then inverted dropout: kept units times ``scale``, dropped ones 0."""
    rows, cols = z.shape
    for r in range(rows):
        for j in range(cols):
            v = z[r, j] + b[j]
            if v < 0:  # not `v <= 0 or NaN`: a NaN stays NaN, so a diverging run is reported
                v = 0
            if drop > 0:
                if uniform_at(key, r * cols + j) < drop:
                    v = 0
                else:
                    v = v * scale
            z[r, j] = v


@jit
def _dropout_input(X, out, key, drop, scale):
    rows, cols = X.shape
    for r in range(rows):
        for j in range(cols):
            out[r, j] = 0 if uniform_at(key, r * cols + j) < drop else X[r, j] * scale


@jit
def _relu_dropout_backward(delta, a, scale):
    """delta <- delta * scale where the unit was active and kept (a > 0), else 0."""
    rows, cols = delta.shape
    for r in range(rows):
        for j in range(cols):
            delta[r, j] = delta[r, j] * scale if a[r, j] > 0 else 0


@jit
def _column_sums(delta, out):
    """out[j] = sum_r delta[r, j], summed in row order (the same bits on every run)."""
    out[:] = 0
    for r in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            out[j] += delta[r, j]


@jit
def _softmax_cross_entropy(z, b, y, gradient):
    """Add the bias to the logits z; return the summed cross-entropy (float64) and the number of
    rows whose largest logit is the label. With ``gradient``, z becomes (softmax(z) - onehot)/B."""
    rows, classes = z.shape
    total = 0.0
    correct = 0
    inverse_rows = z.dtype.type(1.0) / z.dtype.type(rows) if rows > 0 else z.dtype.type(0)
    for r in range(rows):
        top = -np.inf
        best = -1  # stays -1 when every logit is NaN: such a row is never counted as correct
        for c in range(classes):
            z[r, c] += b[c]
            if z[r, c] > top:
                top = z[r, c]
                best = c
        label = y[r]
        if label < 0 or label >= classes:
            raise ValueError("a label is outside 0 .. n_classes - 1")
        correct += best == label
        norm = 0.0
        for c in range(classes):
            norm += math.exp(np.float64(z[r, c]) - top)
        total += math.log(norm) + top - z[r, label]
        if gradient:
            for c in range(classes):
                p = math.exp(np.float64(z[r, c]) - top) / norm
                z[r, c] = (p - (c == label)) * inverse_rows
    return total, correct


@jit
def _sum_of_squares(w):
    total = 0.0
    for i in range(w.size):
        total += np.float64(w[i]) * w[i]
    return total


class MLP:
    """A multilayer perceptron (ReLU hidden layers, softmax output) on one flat parameter vector.

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

    Attributes
    ----------
    n_params : int
        Length of the flat parameter vector.
    training_calls : int
        Number of :meth:`loss_and_grad` calls so far (selects the next dropout masks).

    See Also
    --------
    adamnb.nn.training.train : an epoch loop with a stateful optimizer.
    adamnb.nn.training.train_minimize : the same through :func:`adamnb.minimize`.
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
        if not (isinstance(l2, (int, float, np.floating)) and l2 >= 0 and math.isfinite(l2)):
            raise ValueError(f"Invalid l2: {l2!r}; expected a finite number >= 0")
        dtype = np.dtype(dtype)
        if dtype.type not in (np.float32, np.float64):
            raise ValueError(f"Invalid dtype: {dtype}; expected float32 or float64")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"Invalid seed: {seed!r}; expected an integer")
        self.sizes = tuple(int(s) for s in sizes)
        self.dropout, self.input_dropout, self.l2 = float(dropout), float(input_dropout), float(l2)
        self.dtype, self.seed = dtype, int(seed)
        self.training_calls = 0
        # (weights slice, weights shape, bias slice) per layer, in the flat vector's order.
        self.layout = []
        offset = 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            w = slice(offset, offset + fan_in * fan_out)
            b = slice(w.stop, w.stop + fan_out)
            self.layout.append((w, (fan_in, fan_out), b))
            offset = b.stop
        self.n_params = offset
        self._workspaces = {}

    @property
    def n_layers(self):
        """Number of weight layers (1 for softmax regression)."""
        return len(self.sizes) - 1

    def __repr__(self):
        return (f"{type(self).__name__}(sizes={self.sizes}, dropout={self.dropout}, "
                f"input_dropout={self.input_dropout}, l2={self.l2}, dtype={self.dtype.name}, "
                f"seed={self.seed})")

    # -- parameters -----------------------------------------------------------------------------

    def layers(self, params):
        """The list of ``(W, b)`` views of each layer into ``params`` (writes go through)."""
        params = self._check_params(params)
        return [(params[w].reshape(shape), params[b]) for w, shape, b in self.layout]

    def init(self, seed=None):
        """A new parameter vector: Glorot-uniform weights, zero biases.

        :math:`W_k \\sim U(-r, r)` with :math:`r = \\sqrt{6/(n_{k-1}+n_k)}` (Glorot & Bengio 2010,
        Keras's default for dense layers), drawn from ``numpy.random.default_rng(seed)`` layer by
        layer, so a seed gives the same vector on every machine.
        """
        rng = np.random.default_rng(seed)
        params = np.zeros(self.n_params, dtype=self.dtype)
        for W, _ in self.layers(params):
            limit = math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        return params

    def _check_params(self, params):
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

    def _check_data(self, X, y):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (n, {self.sizes[0]}), got {X.shape}")
        if X.dtype != self.dtype or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=self.dtype)
        if y is not None:
            y = np.asarray(y)
            if y.shape != (X.shape[0],) or y.dtype.kind not in "iu":
                raise ValueError(f"y must be {X.shape[0]} integer labels, got {y.dtype} "
                                 f"array of shape {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= self.sizes[-1]):
                raise ValueError(f"labels must lie in 0 .. {self.sizes[-1] - 1}; got "
                                 f"{y.min()} .. {y.max()}")
        return X, y

    # -- forward and backward -------------------------------------------------------------------

    def _workspace(self, rows):
        # Activations, one buffer per layer output, and one backward buffer per hidden width.
        # Kept per batch size: training sees at most two (full batches and the epoch's last).
        if rows not in self._workspaces:
            if len(self._workspaces) > 4:
                self._workspaces.clear()
            activations = [np.empty((rows, n), dtype=self.dtype) for n in self.sizes[1:]]
            deltas = [np.empty((rows, n), dtype=self.dtype) for n in self.sizes[1:-1]]
            dropped_input = (np.empty((rows, self.sizes[0]), dtype=self.dtype)
                             if self.input_dropout > 0 else None)
            self._workspaces[rows] = (activations, deltas, dropped_input)
        return self._workspaces[rows]

    def _forward(self, layers, X, y, training, gradient):
        """Run the layers; returns (summed cross-entropy, number of correct predictions)."""
        activations, _, dropped_input = self._workspace(X.shape[0])
        a = X
        if training and self.input_dropout > 0:
            _dropout_input(X, dropped_input, stream_key(self.seed, self.training_calls, 0),
                           self.dtype.type(self.input_dropout),
                           self.dtype.type(1.0 / (1.0 - self.input_dropout)))
            a = dropped_input
        drop = self.dtype.type(self.dropout if training else 0.0)
        scale = self.dtype.type(1.0 / (1.0 - self.dropout) if training else 1.0)
        for k, (W, b) in enumerate(layers[:-1], start=1):
            z = activations[k - 1]
            np.matmul(a, W, out=z)
            key = stream_key(self.seed, self.training_calls, k)
            _bias_relu_dropout(z, b, key, drop, scale)
            a = z
        logits = activations[-1]
        np.matmul(a, layers[-1][0], out=logits)
        return _softmax_cross_entropy(logits, layers[-1][1], y, gradient)

    def loss_and_grad(self, params, X, y, out=None):
        """Training objective and its gradient on the batch ``(X, y)``, with fresh dropout masks.

        Parameters
        ----------
        params : ndarray, shape (n_params,)
        X : array_like, shape (batch, n_inputs)
        y : array_like of int, shape (batch,)
        out : ndarray, shape (n_params,), optional
            Where to write the gradient (no allocation); a new array otherwise.

        Returns
        -------
        f : float
            Mean cross-entropy of the batch plus the L2 penalty.
        g : ndarray
            The gradient, laid out like ``params`` (``out`` when given).
        """
        layers = self.layers(params)
        X, y = self._check_data(X, y)
        if X.shape[0] == 0:
            raise ValueError("the batch is empty")
        if out is None:
            out = np.empty_like(params)
        elif out.shape != params.shape or out.dtype != params.dtype \
                or not out.flags.c_contiguous:
            raise ValueError("out must be a contiguous array like params")
        elif np.shares_memory(out, params):
            raise ValueError("out shares memory with params; the backward pass reads the weights "
                             "after writing gradients, so give a separate buffer")
        grads = self.layers(out)
        activations, deltas, dropped_input = self._workspace(X.shape[0])
        total, _ = self._forward(layers, X, y, training=True, gradient=True)
        inputs = [dropped_input if self.input_dropout > 0 else X] + activations[:-1]
        scale = self.dtype.type(1.0 / (1.0 - self.dropout))
        delta = activations[-1]  # the softmax layer's delta, (softmax - onehot) / B
        for k in range(self.n_layers - 1, -1, -1):
            (W, _), (gW, gb) = layers[k], grads[k]
            np.matmul(inputs[k].T, delta, out=gW)
            _column_sums(delta, gb)
            if k > 0:
                below = deltas[k - 1]
                np.matmul(delta, W.T, out=below)
                _relu_dropout_backward(below, inputs[k], scale)
                delta = below
        f = total / X.shape[0]
        if self.l2 > 0:
            for (W, _), (gW, _) in zip(layers, grads):
                f += 0.5 * self.l2 * _sum_of_squares(W.reshape(-1))
                gW += self.dtype.type(self.l2) * W
        self.training_calls += 1
        return float(f), out

    def loss(self, params, X, y, training=False):
        """The objective on ``(X, y)``: mean cross-entropy plus the L2 penalty.

        Without dropout by default (``training=False``); ``training=True`` draws the next dropout
        masks (and counts as a training call), as :meth:`loss_and_grad` does.
        """
        layers = self.layers(params)
        X, y = self._check_data(X, y)
        if X.shape[0] == 0:
            raise ValueError("the batch is empty")
        if training:
            total, _ = self._forward(layers, X, y, training=True, gradient=False)
            self.training_calls += 1
            f = total / X.shape[0]
        else:
            f = self.evaluate(params, X, y)[0]
        if self.l2 > 0:
            f += 0.5 * self.l2 * sum(_sum_of_squares(W.reshape(-1)) for W, _ in layers)
        return float(f)

    def evaluate(self, params, X, y):
        """Mean cross-entropy (without the L2 penalty) and accuracy on ``(X, y)``, no dropout."""
        layers = self.layers(params)
        X, y = self._check_data(X, y)
        if X.shape[0] == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        total, correct = 0.0, 0
        for start in range(0, X.shape[0], EVALUATION_CHUNK):
            rows = slice(start, start + EVALUATION_CHUNK)
            chunk_total, chunk_correct = self._forward(layers, X[rows], y[rows],
                                                          training=False, gradient=False)
            total += chunk_total
            correct += chunk_correct
        return total / X.shape[0], correct / X.shape[0]

    def logits(self, params, X):
        """The output layer's pre-softmax values, no dropout; shape (n, n_classes)."""
        layers = self.layers(params)
        X, _ = self._check_data(X, None)
        a = X
        for W, b in layers[:-1]:
            a = a @ W + b
            np.maximum(a, 0, out=a, where=~np.isnan(a))
        return a @ layers[-1][0] + layers[-1][1]

    def predict(self, params, X):
        """The most probable class of each row of ``X``."""
        return np.argmax(self.logits(params, X), axis=1)


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
