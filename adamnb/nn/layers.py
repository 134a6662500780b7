r"""Layers of a :class:`adamnb.nn.Sequential` model, and the CPU passes that run them.

The layers describe a network the way Keras's ``Sequential`` does; :class:`adamnb.nn.Sequential`
turns a list of them into *blocks*, each a weight layer with what follows it fused in:

* :class:`Dense` followed by an optional :class:`Dropout`: :math:`a = \operatorname{act}(x W + b)
  \odot D` (one BLAS product written into a preallocated buffer, then one fused pass of bias,
  activation and dropout; :mod:`adamnb.nn.elements`);
* :class:`Conv2D` followed by an optional :class:`MaxPool2D` and an optional :class:`Dropout`:
  :math:`a = \operatorname{pool}(\operatorname{act}(x \star K + b)) \odot D` in one direct kernel;
* a :class:`Dropout` in first place (dropout on the inputs).

:class:`Flatten` only changes how the next layer sees the same memory.

Layouts
    Images are channels-last, ``(rows, height, width, channels)`` (Keras's default); a Conv2D
    kernel is ``(kh, kw, in_channels, filters)`` and a Dense kernel ``(fan_in, units)``, each
    followed by its bias in the model's flat parameter vector. :class:`Flatten` keeps that memory
    order (height, width, channel), as Keras's does.

Convolution (stride 1, 'valid')
    :math:`z_{n,i,j,f} = b_f + \sum_{u,v,c} x_{n,i+u,j+v,c} K_{u,v,c,f}` (a cross-correlation,
    like ``scipy.signal.correlate(..., mode="valid")`` and every deep-learning library).

    *Forward*: a direct numba kernel, compiled for the layer's shape (kernel size, channels,
    filters and pool size are constants in it). For each pooled cell it computes the pool
    window's convolutions channel by channel with the filters innermost, so LLVM vectorises
    across the filters; then bias, activation, the max over the window (a NaN wins, so divergence
    shows) with the window position of the max (``argmax``, one byte per output), and dropout.
    It is faster than im2col + GEMM + a pooling pass (``benchmarks/bench_cnn.py --kernels``, the
    Keras CNN's layer, 64 images, one thread: 0.67 ms against 0.78 ms of CPU time; a tie in runs
    on a more loaded machine) and never stores the 26x26x32 pre-pooling output nor the patch
    matrix (for an evaluation chunk of 2,000 images they would take 230 MB).

    *Backward*: the incoming gradient is gated (kept, active units; :mod:`adamnb.nn.elements`)
    and routed to each window's max as one plane per window position, ``dZ[q]``; the patches of
    the same positions, with a column of ones appended, form ``P`` (im2col), and one BLAS product
    ``P^T dZ`` gives the kernel's gradient and, from the ones, the bias gradient, written straight
    into the flat gradient (kernel and bias are adjacent there). A direct kernel has to
    accumulate into the 288 kernel gradients window by window, which numba cannot keep in
    registers: 2.67 ms against 1.10 ms for the routed GEMM (same benchmark). When the layer is
    not the first, the input gradient is ``dZ K^T`` scattered back (col2im).

Max pooling
    :math:`\operatorname{pool}(a)_{n,p,q,f} = \max_{0 \le s,t < k} a_{n,kp+s,kq+t,f}` over
    non-overlapping ``k x k`` windows ('valid': rows or columns that do not fill a window are
    dropped, as Keras's ``MaxPooling2D`` and PyTorch's ``MaxPool2d`` do). The gradient goes to the
    first maximum of each window in row-major order.

Dropout masks
    As in the MLP: the mask of unit ``j`` (flat index within a row's output, memory order) of row
    ``r`` is ``uniform_at(stream_key(seed, call, stream), r * features + j) >= p``, where
    ``stream`` is the number of weight layers before the Dropout (0 for dropout on the inputs).
"""

import math

import numpy as np

from adamnb.backends.jit import elementwise, jit
from adamnb.backends.random import uniform_at
from adamnb.nn.elements import cpu_loop, ordered_sum, sum_of_squares

__all__ = ["Layer", "Dense", "Conv2D", "MaxPool2D", "Dropout", "Flatten", "CpuOps", "CPU_OPS",
           "pool_max", "dropout_value"]

_ACTIVATIONS = ("relu", None)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid {name}: {value!r}; expected a positive integer")
    return int(value)


def _activation(value, allow_softmax=False):
    if value == "linear":
        value = None
    if value == "softmax" and allow_softmax:
        return "softmax"
    if value not in _ACTIVATIONS:
        allowed = "'relu' or None" + (" ('softmax' on the last Dense)" if allow_softmax else "")
        raise ValueError(f"Invalid activation: {value!r}; expected {allowed}")
    return value


class Layer:
    """Base class of the layers; a layer describes, a :class:`adamnb.nn.Sequential` runs."""

    #: Whether the layer owns parameters (a kernel and a bias).
    has_weights = False

    def output_shape(self, input_shape):
        """The shape of one example's output for one example's input shape (no batch axis)."""
        raise NotImplementedError

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({options})"


class Dense(Layer):
    """A fully connected layer, :math:`\\operatorname{act}(x W + b)`, on 1-D inputs.

    Parameters
    ----------
    units : int
        Output width.
    activation : {"relu", None}, default None
        On the last layer ``None`` (or ``"softmax"``, meaning the same thing: the softmax is part
        of the loss, softmax cross-entropy) gives the logits.
    """

    has_weights = True

    def __init__(self, units, activation=None):
        self.units = _positive_int("units", units)
        self.activation = _activation(activation, allow_softmax=True)

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense needs 1-D inputs per example, got shape {input_shape}; put "
                             "a Flatten() before it")
        return (self.units,)

    def weight_shapes(self, input_shape):
        """Kernel ``(fan_in, units)`` and bias ``(units,)``."""
        return (input_shape[0], self.units), (self.units,)

    def fans(self, input_shape):
        """Fan-in and fan-out of the kernel (Glorot initialisation)."""
        return input_shape[0], self.units


class Conv2D(Layer):
    """A 2-D convolution (stride 1, 'valid'), :math:`\\operatorname{act}(x \\star K + b)`.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int or (int, int)
        Height and width of the kernel.
    activation : {"relu", None}, default None
    """

    has_weights = True

    def __init__(self, filters, kernel_size, activation=None):
        self.filters = _positive_int("filters", filters)
        sizes = (kernel_size, kernel_size) if not isinstance(kernel_size, (tuple, list)) \
            else tuple(kernel_size)
        if len(sizes) != 2:
            raise ValueError(f"Invalid kernel_size: {kernel_size!r}; expected an int or two ints")
        self.kernel_size = tuple(_positive_int("kernel_size", s) for s in sizes)
        self.activation = _activation(activation)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D needs (height, width, channels) inputs per example, got "
                             f"shape {input_shape}")
        height, width, _ = input_shape
        kh, kw = self.kernel_size
        if height < kh or width < kw:
            raise ValueError(f"Conv2D kernel {kh}x{kw} is larger than its input {height}x{width}")
        return (height - kh + 1, width - kw + 1, self.filters)

    def weight_shapes(self, input_shape):
        """Kernel ``(kh, kw, in_channels, filters)`` and bias ``(filters,)``."""
        return (*self.kernel_size, input_shape[2], self.filters), (self.filters,)

    def fans(self, input_shape):
        """Keras's fans of a convolution kernel: receptive field times in/out channels."""
        field = self.kernel_size[0] * self.kernel_size[1]
        return field * input_shape[2], field * self.filters


class MaxPool2D(Layer):
    """Max pooling over non-overlapping ``pool_size x pool_size`` windows ('valid').

    Must directly follow a :class:`Conv2D` (it is computed in the convolution's kernel).
    """

    def __init__(self, pool_size=2):
        if isinstance(pool_size, (tuple, list)):
            if len(pool_size) != 2 or pool_size[0] != pool_size[1]:
                raise ValueError(f"Invalid pool_size: {pool_size!r}; expected a square window")
            pool_size = pool_size[0]
        self.pool_size = _positive_int("pool_size", pool_size)
        if self.pool_size > 15:
            raise ValueError(f"Invalid pool_size: {pool_size!r}; expected at most 15")

    def output_shape(self, input_shape):
        height, width, channels = input_shape
        k = self.pool_size
        if height < k or width < k:
            raise ValueError(f"MaxPool2D window {k}x{k} is larger than its input "
                             f"{height}x{width}")
        return (height // k, width // k, channels)


class Dropout(Layer):
    """Inverted dropout: each unit is zeroed with probability ``rate``, the others scaled by
    ``1 / (1 - rate)``, during training only (masks from :mod:`adamnb.backends.random`)."""

    def __init__(self, rate):
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
                or not 0 <= rate < 1:
            raise ValueError(f"Invalid rate: {rate!r}; expected a probability in [0, 1)")
        self.rate = float(rate)

    def output_shape(self, input_shape):
        return tuple(input_shape)


class Flatten(Layer):
    """Each example's output as one row (memory order: height, width, channel)."""

    def output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)


# --- blocks: the passes -----------------------------------------------------------------------------
# A block gets its parameters and its gradient as flat slices of the model's vectors (kernel, then
# bias), a dict of its buffers for the batch, and the ops that run the passes on the arrays' device:
# CPU (CPU_OPS, below) or GPU (adamnb.nn.cuda_ops.CudaOps), the same interface and the same
# element functions (adamnb.nn.elements).

class CpuOps:
    """The passes' primitives on NumPy arrays: BLAS products and the compiled element loops.

    The interface every ops object offers to :class:`adamnb.nn.Sequential` (the GPU's is
    :class:`adamnb.nn.cuda_ops.CudaOps`): array checks and allocation, ``matmul``, ``loop`` (an
    element of :mod:`adamnb.nn.elements` over a grid), and the few reductions.
    """

    name = "cpu"

    @staticmethod
    def check_params(model, params):
        return model.check_params(params)

    @staticmethod
    def check_data(model, X, y):
        return model.check_data(X, y)

    @staticmethod
    def check_out(model, params, out):
        """``out``, checked to be a separate contiguous array like ``params``, or a new one."""
        if out is None:
            return np.empty_like(params)
        if not isinstance(out, np.ndarray) or out.shape != params.shape \
                or out.dtype != params.dtype or not out.flags.c_contiguous:
            raise ValueError("out must be a contiguous array like params")
        if np.shares_memory(out, params):
            raise ValueError("out shares memory with params; the backward pass reads the weights "
                             "after writing gradients, so give a separate buffer")
        return out

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype)

    @staticmethod
    def matmul(A, B, C, trans_a=False, trans_b=False):
        """``C = op(A) @ op(B)``, written into ``C``."""
        np.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)

    @staticmethod
    def loop(name, extents, *args):
        """Run element ``name`` of :mod:`adamnb.nn.elements` (or an ``(element, dimensions,
        arity)`` triple) over ``extents`` (rows, cols) or (n,)."""
        cpu_loop(name)(*extents, *args)

    @staticmethod
    def loss_dtype(dtype):
        """The per-row losses' dtype: float64 (the softmax accumulates in it)."""
        return np.dtype(np.float64)

    @staticmethod
    def reductions(dtype):
        """Scratch of the reductions (none on the CPU)."""
        return None

    @staticmethod
    def total(losses, reductions):
        """Sum of the per-row losses, in row order."""
        return float(ordered_sum(losses))

    @staticmethod
    def count(correct, reductions):
        return int(correct.sum())

    @staticmethod
    def sum_of_squares(w, reductions):
        return sum_of_squares(w.reshape(-1))

    @staticmethod
    def add_scaled(g, w, alpha):
        """``g += alpha * w`` (NumPy: the product rounded, then the sum)."""
        g += alpha * w

    @staticmethod
    def to_host(a):
        return np.array(a)

    @staticmethod
    def explain_nan(y, classes):
        """Nothing to explain: the CPU checks the labels before the passes."""


#: The CPU's primitives.
CPU_OPS = CpuOps()


def _dropout_scalars(rate, training, dtype):
    """(drop, scale) of a pass: the rate and 1/(1-rate) in training, else (0, 1)."""
    T = dtype.type
    if training and rate > 0:
        return T(rate), T(1.0 / (1.0 - rate))
    return T(0.0), T(1.0)


def _rows(a, features):
    """The (rows, features) view of a batch's array (NumPy or device)."""
    return a if len(a.shape) == 2 else a.reshape(a.shape[0], features)


def _gate(ops, delta, out, relu, rate, key, dtype, features):
    """The backward of activation and dropout, in place on the (rows, features) view of delta."""
    delta2 = _rows(delta, features)
    drop, scale = _dropout_scalars(rate, True, dtype)
    if relu:  # out > 0 exactly when the unit was active and kept
        ops.loop("relu_dropout_backward", delta2.shape, delta2, _rows(out, features), scale)
    elif rate > 0:  # no activation: dropout's backward is the same mask, recomputed
        ops.loop("dropout", delta2.shape, delta2, delta2, key, drop, scale)


class InputDropoutBlock:
    """Dropout on the model's inputs (a Dropout in first place); no parameters."""

    layer = None
    n_params = 0

    def __init__(self, rate, input_shape, dtype):
        self.rate, self.dtype = rate, dtype
        self.input_shape = self.output_shape = tuple(input_shape)
        self.features = int(np.prod(input_shape))
        self.stream = 0

    def buffers(self, ops, rows, gradient):
        return {"out": ops.empty((rows, *self.output_shape), self.dtype)}

    def forward(self, ops, params, x, work, training, key):
        drop, scale = _dropout_scalars(self.rate, training, self.dtype)
        if drop == 0:
            return x
        out = work["out"]
        x2 = _rows(x, self.features)
        ops.loop("dropout", x2.shape, x2, _rows(out, self.features), key, drop, scale)
        return out


class _WeightBlock:
    """A weight layer (kernel then bias in the flat vector) and what is fused after it."""

    def __init__(self, layer, rate, stream, input_shape, dtype):
        self.layer, self.rate, self.stream, self.dtype = layer, rate, stream, dtype
        self.input_shape = tuple(input_shape)
        self.features_in = int(np.prod(self.input_shape))
        self.kernel_shape, self.bias_shape = layer.weight_shapes(self.input_shape)
        self.n_kernel = int(np.prod(self.kernel_shape))
        self.n_params = self.n_kernel + int(np.prod(self.bias_shape))
        self.relu = layer.activation == "relu"

    def split(self, flat):
        """``(kernel, bias)`` views of this layer's flat slice."""
        return flat[:self.n_kernel].reshape(self.kernel_shape), flat[self.n_kernel:]


class DenseBlock(_WeightBlock):
    """A Dense layer with the Dropout after it; the last one gives the logits."""

    def __init__(self, layer, rate, stream, input_shape, dtype, last):
        super().__init__(layer, rate, stream, (int(np.prod(input_shape)),), dtype)
        self.output_shape = (layer.units,)
        self.last = last

    def buffers(self, ops, rows, gradient):
        return {"out": ops.empty((rows, self.layer.units), self.dtype)}

    def forward(self, ops, params, x, work, training, key):
        W, b = self.split(params)
        z = work["out"]
        ops.matmul(_rows(x, self.features_in), W, z)
        if self.last:
            return z  # the bias is added by the softmax, which writes the delta in place
        drop, scale = _dropout_scalars(self.rate, training, self.dtype)
        ops.loop("bias_activation_dropout", z.shape, z, b, key, drop, scale, self.relu)
        return z

    def backward(self, ops, params, grad, x, work, d_out, d_in, key):
        """``d_out``: the gradient with respect to this block's output (for the last block the
        logits' delta), gated in place; then the kernel, bias and (into ``d_in``) input gradients."""
        W, _ = self.split(params)
        gW, gb = self.split(grad)
        if not self.last:
            _gate(ops, d_out, work["out"], self.relu, self.rate, key, self.dtype,
                  self.layer.units)
        ops.matmul(_rows(x, self.features_in), d_out, gW, trans_a=True)
        ops.loop("column_sum", (gb.shape[0],), d_out, gb)
        if d_in is not None:
            ops.matmul(d_out, W, _rows(d_in, self.features_in), trans_b=True)


class ConvBlock(_WeightBlock):
    """A Conv2D layer with the MaxPool2D and the Dropout after it (module notes). CPU only."""

    has_gpu_path = False

    def __init__(self, layer, pool, rate, stream, input_shape, dtype):
        super().__init__(layer, rate, stream, input_shape, dtype)
        self.pool = pool
        conv_shape = layer.output_shape(self.input_shape)
        self.output_shape = (conv_shape[0] // pool, conv_shape[1] // pool, layer.filters)
        kh, kw = layer.kernel_size
        self.taps = kh * kw * self.input_shape[2]
        self.shape_key = (kh, kw, self.input_shape[2], layer.filters, pool)

    def buffers(self, ops, rows, gradient):
        """Output and window maxima; with ``gradient`` also the backward's planes and patches
        (4x the pooled output: not allocated for evaluation). CPU only."""
        oh, ow, filters = self.output_shape
        work = {"out": np.empty((rows, *self.output_shape), self.dtype),
                "argmax": np.empty((rows, *self.output_shape), np.uint8)}
        if gradient:
            positions = self.pool * self.pool * rows * oh * ow
            work["planes"] = np.empty((positions, filters), self.dtype)
            work["patches"] = np.empty((positions, self.taps + 1), self.dtype)
        return work

    def forward(self, ops, params, x, work, training, key):
        W, b = self.split(params)
        drop, scale = _dropout_scalars(self.rate, training, self.dtype)
        _conv_forward(*self.shape_key)(x, W.reshape(self.taps, -1), b, work["out"],
                                       work["argmax"], self.relu, key, drop, scale)
        return work["out"]

    def backward(self, ops, params, grad, x, work, d_out, d_in, key):
        W, _ = self.split(params)
        kh, kw, channels, filters, pool = self.shape_key
        oh, ow, _ = self.output_shape
        planes, patches = work["planes"], work["patches"]
        _gate(ops, d_out, work["out"], self.relu, self.rate, key, self.dtype,
              oh * ow * filters)
        _route(pool)(d_out.reshape(-1), work["argmax"].reshape(-1), planes.reshape(-1))
        _patches(kh, kw, channels, pool)(x, patches, oh, ow, True)
        # Kernel and bias are adjacent in the flat gradient: one (taps + 1, filters) matrix.
        np.matmul(patches.T, planes, out=grad.reshape(self.taps + 1, filters))
        if d_in is not None:
            columns = patches[:, :self.taps]  # reused: the patches are no longer needed
            np.matmul(planes, W.reshape(self.taps, filters).T, out=columns)
            _patches(kh, kw, channels, pool)(d_in, columns, oh, ow, False)


# --- convolution kernels (compiled per layer shape; constants let LLVM vectorise) --------------------

_kernels = {}


def _compiled(kind, builder, *shape):
    key = (kind, *shape)
    if key not in _kernels:
        _kernels[key] = builder(*shape)
    return _kernels[key]


@elementwise
def pool_max(value, q, best, arg, relu, zero):
    """The activation of ``value`` (window position ``q``) folded into its pool window's running
    maximum ``(best, arg)``: the first maximum in row-major order; a NaN wins (divergence shows)."""
    # No argument is rebound: numba's inliner loses track of rebound arguments across inlined
    # copies (NumbaIRAssumptionWarning).
    active = zero if relu and value < zero else value  # not `<= 0 or NaN`: a NaN stays NaN
    if active > best or active != active:
        return active, q
    return best, arg


@elementwise
def dropout_value(value, key, index, drop, scale, zero):
    """Inverted dropout of one output: 0 when ``uniform_at(key, index) < drop``, else
    ``value * scale`` (``value`` itself when ``drop`` is 0)."""
    if drop > zero:
        if uniform_at(key, index) < drop:
            return zero
        return value * scale
    return value


def _conv_forward(kh, kw, channels, filters, pool):
    return _compiled("forward", _build_conv_forward, kh, kw, channels, filters, pool)


def _build_conv_forward(kh, kw, channels, filters, pool):
    window = pool * pool

    @jit
    def conv_forward(x, w, b, out, argmax, relu, key, drop, scale):
        rows, oh, ow = out.shape[0], out.shape[1], out.shape[2]
        zero = out.dtype.type(0)
        for n in range(rows):
            for pi in range(oh):
                for pj in range(ow):
                    base = ((n * oh + pi) * ow + pj) * filters
                    for f in range(filters):
                        best = out.dtype.type(-np.inf)
                        arg = 0
                        for q in range(window):
                            i = pi * pool + q // pool
                            j = pj * pool + q % pool
                            s = b[f]
                            t = 0
                            for u in range(kh):
                                for v in range(kw):
                                    for c in range(channels):
                                        s += x[n, i + u, j + v, c] * w[t, f]
                                        t += 1
                            best, arg = pool_max(s, q, best, arg, relu, zero)
                        out[n, pi, pj, f] = dropout_value(best, key, base + f, drop, scale, zero)
                        argmax[n, pi, pj, f] = arg

    return conv_forward


def _route(pool):
    return _compiled("route", _build_route, pool)


def _build_route(pool):
    window = pool * pool

    @jit
    def route(gated, argmax, planes):
        """planes[q * size + k] = gated[k] where the window's max is at q, else 0 (flat views;
        gated and argmax in (n, pi, pj, f) order, planes in (q, n, pi, pj, f) order)."""
        size = gated.size
        zero = planes.dtype.type(0)
        for q in range(window):
            offset = q * size
            for k in range(size):
                planes[offset + k] = gated[k] if argmax[k] == q else zero

    return route


def _patches(kh, kw, channels, pool):
    return _compiled("patches", _build_patches, kh, kw, channels, pool)


def _build_patches(kh, kw, channels, pool):
    window = pool * pool
    taps = kh * kw * channels

    @jit
    def patches(images, columns, oh, ow, to_columns):
        """Row (q, n, pi, pj) of ``columns`` is the patch under window position q of pooled cell
        (n, pi, pj). ``to_columns``: copy the patches out of ``images`` and a 1 after each (for
        the bias gradient), im2col; else add the columns back into ``images`` (zeroed first),
        col2im."""
        rows = images.shape[0]
        if not to_columns:
            images[...] = 0
        p = 0
        for q in range(window):
            for n in range(rows):
                for pi in range(oh):
                    for pj in range(ow):
                        i = pi * pool + q // pool
                        j = pj * pool + q % pool
                        t = 0
                        for u in range(kh):
                            for v in range(kw):
                                for c in range(channels):
                                    if to_columns:
                                        columns[p, t] = images[n, i + u, j + v, c]
                                    else:
                                        images[n, i + u, j + v, c] += columns[p, t]
                                    t += 1
                        if to_columns:
                            columns[p, taps] = columns.dtype.type(1)
                        p += 1

    return patches


def glorot_limit(fan_in, fan_out):
    """Glorot & Bengio (2010) uniform limit :math:`\\sqrt{6 / (n_{in} + n_{out})}` (Keras's
    ``GlorotUniform``)."""
    return math.sqrt(6.0 / (fan_in + fan_out))
