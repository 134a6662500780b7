"""adamnb.nn's Sequential layers (Conv2D, MaxPool2D, Dropout, Flatten, Dense) against finite
differences (float64) and an independent forward pass (scipy.signal.correlate, plain NumPy)."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import correlate
from scipy.special import logsumexp

import adamnb
from adamnb.backends.random import stream_key, uniform_at
from adamnb.nn import (Conv2D, Dense, Dropout, Flatten, MaxPool2D, Sequential, keras_mnist_cnn,
                       train, train_minimize)
from tests.test_nn import central_differences, random_params


def python_mask(seed, call, stream, rows, features, rate):
    """Dropout's keep-mask (0/1) from adamnb.backends.random's element, run as plain Python."""
    if rate == 0:
        return np.ones((rows, features))
    key = stream_key(seed, call, stream)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as intended
        u = np.array([uniform_at(key, i) for i in range(rows * features)], dtype=np.float32)
    return (u >= np.float32(rate)).reshape(rows, features).astype(float)


def reference_outputs(model, params, X, call=None):
    """Each block's output, computed layer by layer with scipy and NumPy (NHWC layouts)."""
    training = call is not None
    views = iter(model.layers(params))
    a, outputs, weight_layers = np.asarray(X, dtype=float), [], 0
    pending = None  # the output of the current weight layer, before its Dropout
    for layer in model.stack:
        if isinstance(layer, Conv2D):
            K, b = next(views)
            _, _, cin, filters = K.shape
            z = np.stack([sum(np.stack([correlate(a[n, :, :, c], K[:, :, c, f], mode="valid")
                                        for n in range(len(a))])
                              for c in range(cin)) + b[f] for f in range(filters)], axis=-1)
            a = np.maximum(z, 0) if layer.activation == "relu" else z
            weight_layers += 1
        elif isinstance(layer, MaxPool2D):
            k = layer.pool_size
            n, h, w, c = a.shape
            a = a[:, :h // k * k, :w // k * k].reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))
        elif isinstance(layer, Flatten):
            a = a.reshape(len(a), -1)
        elif isinstance(layer, Dense):
            W, b = next(views)
            a = a.reshape(len(a), -1) @ W + b
            if layer.activation == "relu":
                a = np.maximum(a, 0)
            weight_layers += 1
        elif isinstance(layer, Dropout):
            if training:
                mask = python_mask(model.seed, call, weight_layers, len(a), a[0].size, layer.rate)
                a = a * mask.reshape(a.shape) / (1 - layer.rate)
        if isinstance(layer, (Conv2D, Dense)) and pending is not None:
            outputs.append(pending)  # the previous block's output
        if not isinstance(layer, Flatten):
            pending = a
    outputs.append(pending)
    return outputs


def reference_objective(model, params, X, y, call):
    z = reference_outputs(model, params, X, call)[-1]
    cross_entropy = np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y])
    return cross_entropy + 0.5 * model.l2 * sum(np.sum(W ** 2) for W, _ in model.layers(params))


MODELS = {
    # the Keras article's architecture, small
    "conv-pool-dropout-dense": lambda **o: Sequential(
        [Conv2D(3, 3, activation="relu"), MaxPool2D(2), Dropout(0.3), Flatten(),
         Dense(5, activation="relu"), Dropout(0.5), Dense(3, activation="softmax")],
        input_shape=(7, 8, 2), **o),
    # two convolutions (the input gradient of the second), no activation before the pool,
    # a 3x3 pool that drops a row and a column, dropout behind a linear layer
    "conv-conv-pool3": lambda **o: Sequential(
        [Conv2D(2, (2, 3), activation="relu"), Conv2D(3, 2), MaxPool2D(3), Dropout(0.25),
         Flatten(), Dense(4), Dropout(0.4), Dense(3)],
        input_shape=(9, 10, 1), **o),
    # a convolution without pooling, input dropout, L2
    "dropout-conv-dense": lambda **o: Sequential(
        [Dropout(0.2), Conv2D(2, 2, activation="relu"), Flatten(), Dense(3)],
        input_shape=(4, 5, 3), **o),
}


def problem(model, rows=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, *model.input_shape))
    y = rng.integers(0, model.n_classes, rows)
    return X.astype(model.dtype), y


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("call", [None, 0, 3])
def test_every_block_matches_scipy_and_numpy(name, call):
    model = MODELS[name](dtype=np.float64, seed=7)
    params = random_params(model)
    X, _ = problem(model)
    ours = model.activations(params, X, call=call)
    expected = reference_outputs(model, params, X, call)
    assert len(ours) == len(expected)
    for k, (a, b) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-12, atol=1e-13, err_msg=k)
    assert model.training_calls == 0  # activations() draws no call number


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_gradient_matches_finite_differences(name, l2):
    model = MODELS[name](dtype=np.float64, seed=3, l2=l2)
    params = random_params(model)
    X, y = problem(model)
    f, g = model.loss_and_grad(params, X, y)
    assert model.training_calls == 1
    assert f == pytest.approx(reference_objective(model, params, X, y, call=0), rel=1e-12)
    fd = central_differences(model, params, X, y, calls=0)  # the masks of call 0 again
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # every parameter gets a gradient somewhere in the model (no block silently skipped)
    for gW, gb in model.layers(g):
        assert np.any(gW != 0) and np.any(gb != 0)


def test_keras_mnist_cnn_is_the_articles_network():
    model = keras_mnist_cnn(seed=5)
    assert model.input_shape == (28, 28, 1) and model.output_shape == (10,)
    assert [type(layer).__name__ for layer in model.stack] == [
        "Conv2D", "MaxPool2D", "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.n_params == (3 * 3 * 1 * 32 + 32) + (13 * 13 * 32 * 256 + 256) + (256 * 10 + 10)
    shapes = [(W.shape, b.shape) for W, b in model.layers(model.init(0))]
    assert shapes == [((3, 3, 1, 32), (32,)), ((5408, 256), (256,)), ((256, 10), (10,))]
    assert [block.rate for block in model.blocks] == [0.25, 0.5, 0.0]
    assert model.seed == 5 and model.dtype == np.float32


def test_init_is_keras_glorot_uniform_with_zero_biases():
    model = keras_mnist_cnn()
    a, b = model.init(3), model.init(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.init(4))
    (K, kb), (W1, b1), (W2, b2) = model.layers(a)
    assert not (kb.any() or b1.any() or b2.any())
    # Keras's fans for a conv kernel: receptive field x channels (9 x 1 in, 9 x 32 out)
    for W, limit in ((K, math.sqrt(6 / (9 + 288))), (W1, math.sqrt(6 / (5408 + 256))),
                     (W2, math.sqrt(6 / (256 + 10)))):
        assert np.abs(W).max() <= limit and np.abs(W).max() > 0.95 * limit
        assert abs(W.std() - limit / math.sqrt(3)) < 0.05 * limit  # U(-r, r) has std r/sqrt(3)


def test_flat_rows_are_reshaped_to_images():
    model = keras_mnist_cnn()
    params = model.init(0)
    X = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    np.testing.assert_array_equal(model.logits(params, X),
                                  model.logits(params, X.reshape(3, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"X must have shape \(n, 28, 28, 1\)"):
        model.logits(params, X[:, :700])


def test_nan_in_the_convolution_is_reported_not_hidden():
    model = MODELS["conv-pool-dropout-dense"](dtype=np.float64)
    params = random_params(model)
    params[0] = np.nan  # one kernel weight
    X, y = problem(model)
    f, g = model.loss_and_grad(params, X, y)
    assert np.isnan(f) and np.isnan(g).any()
    loss, accuracy = model.evaluate(params, X, y)
    assert np.isnan(loss) and accuracy == 0  # NaN logits never count as correct


@pytest.mark.parametrize("layers, input_shape, message", [
    ([Conv2D(2, 3), Dense(3)], (5, 5, 1), "Flatten"),
    ([Dense(4), MaxPool2D(2), Dense(3)], (6,), "MaxPool2D must directly follow a Conv2D"),
    ([Conv2D(2, 3), Dropout(0.1), MaxPool2D(2), Flatten(), Dense(3)], (6, 6, 1),
     "MaxPool2D must directly follow"),
    ([Dense(4), Dropout(0.1), Dropout(0.2), Dense(3)], (6,), "two Dropouts in a row"),
    ([Dense(4, activation="softmax"), Dense(3)], (6,), "only the last Dense"),
    ([Dense(4), Dense(3, activation="relu")], (6,), "logits"),
    ([Dense(3), Dropout(0.5)], (6,), "nothing may follow"),
    ([Conv2D(2, 3), Flatten()], (6, 6, 1), "last layer must be a Dense"),
    ([Dense(1)], (6,), ">= 2 classes"),
    ([Conv2D(2, 7), Flatten(), Dense(3)], (6, 6, 1), "larger than its input"),
    ([Dense(3)], (0,), "input_shape"),
])
def test_layers_that_do_not_fit_are_explained(layers, input_shape, message):
    with pytest.raises(ValueError, match=message):
        Sequential(layers, input_shape)


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(0, 3), "filters"),
    (lambda: Conv2D(2, (3, 3, 3)), "kernel_size"),
    (lambda: Conv2D(2, 3, activation="tanh"), "activation"),
    (lambda: Dense(2.5), "units"),
    (lambda: Dropout(1.0), "rate"),
    (lambda: MaxPool2D((2, 3)), "square"),
])
def test_invalid_layer_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layers_must_be_layers():
    with pytest.raises(TypeError, match="Layer"):
        Sequential(["dense"], (3,))


def small_images(n=240, seed=0):
    """Two classes of 8x8 images: a bright vertical bar or a bright horizontal bar, in noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.random((n, 8, 8, 1), dtype=np.float32) * 0.5
    where = rng.integers(1, 7, n)
    for i in range(n):
        if y[i]:
            X[i, where[i], :, 0] += 1
        else:
            X[i, :, where[i], 0] += 1
    return X[:200], y[:200], X[200:], y[200:]


def small_cnn(seed=0):
    return Sequential([Conv2D(4, 3, activation="relu"), MaxPool2D(2), Dropout(0.25), Flatten(),
                       Dense(8, activation="relu"), Dropout(0.5), Dense(2)],
                      input_shape=(8, 8, 1), seed=seed)


def test_cnn_learns_and_both_training_routes_give_the_same_bits():
    X, y, Xt, yt = small_images()
    runs = []
    for route in ("loop", "minimize"):
        model = small_cnn(seed=4)
        params0 = model.init(2)
        if route == "loop":
            params = params0.copy()
            history = train(model, params, adamnb.Adam(lr=0.01, backend="cpu"), X, y, epochs=4,
                            batch_size=16, X_test=Xt, y_test=yt, seed=1, progress=False)
        else:
            result, history = train_minimize(model, params0, "adam", X, y, epochs=4,
                                             batch_size=16, options={"lr": 0.01}, X_test=Xt,
                                             y_test=yt, seed=1, progress=False)
            params = result.x
        runs.append((params, history))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1]["train_loss"] == runs[1][1]["train_loss"]
    assert runs[0][1]["test_accuracy"] == runs[1][1]["test_accuracy"]
    assert runs[0][1]["test_accuracy"][-1] >= 0.9


DATA = os.environ.get("ADAMNB_DATA")
needs_mnist = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "train-labels-idx1-ubyte.gz").exists()
    and not (Path(DATA) / "train-labels-idx1-ubyte").exists(),
    reason="real MNIST not found: set ADAMNB_DATA to a folder holding the four IDX files")


@needs_mnist
def test_keras_mnist_cnn_learns_real_mnist():
    from adamnb.nn.datasets import load_mnist
    data = load_mnist(download=False)
    X, y = data.X_train[:6000], data.y_train[:6000]
    model = keras_mnist_cnn(seed=0)
    params = model.init(0)
    history = train(model, params, adamnb.Adam(lr=1e-3, eps=1e-7, backend="cpu"), X, y,
                    epochs=1, batch_size=64, X_test=data.X_test[:2000], y_test=data.y_test[:2000],
                    progress=False)
    assert history[-1]["test_accuracy"] > 0.85  # one epoch over 6,000 images (94 steps)
