"""adamnb.nn against finite differences and an independent NumPy forward pass."""

import numpy as np
import pytest
from scipy.special import logsumexp

from adamnb.backends.random import stream_key, uniform_at
from adamnb.nn import MLP, Sequential, SoftmaxRegression
from adamnb.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D


def problem(sizes, rows=7, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], rows)
    return X, y


def random_params(model, seed=1):
    """Glorot weights plus random biases, so that no ReLU input sits exactly on its kink."""
    params = model.init(seed)
    rng = np.random.default_rng(seed + 100)
    for _, b in model.layers(params):
        b[...] = rng.normal(scale=0.3, size=b.shape)
    return params


def central_differences(model, params, X, y, calls, h=1e-6):
    """d/dp of the training objective with the dropout masks of training call ``calls``."""
    g = np.empty_like(params)
    for i in range(params.size):
        values = []
        for sign in (1, -1):
            q = params.copy()
            q[i] += sign * h
            model.training_calls = calls
            values.append(model.loss(q, X, y, training=True))
        g[i] = (values[0] - values[1]) / (2 * h)
    return g


@pytest.mark.parametrize("sizes, options", [
    ((6, 3), {}),
    ((6, 3), {"l2": 0.3}),
    ((6, 5, 4, 3), {}),
    ((6, 5, 4, 3), {"dropout": 0.3}),
    ((6, 5, 4, 3), {"dropout": 0.5, "input_dropout": 0.2, "l2": 0.1}),
    ((5, 8, 2), {"input_dropout": 0.4}),
])
def test_gradient_matches_finite_differences(sizes, options):
    model = MLP(sizes, dtype=np.float64, seed=3, **options)
    params = random_params(model)
    X, y = problem(sizes)
    calls = model.training_calls
    f, g = model.loss_and_grad(params, X, y)
    assert model.training_calls == calls + 1
    fd = central_differences(model, params, X, y, calls)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    model.training_calls = calls
    assert model.loss(params, X, y, training=True) == pytest.approx(f, rel=1e-15)


def reference_objective(model, params, X, y, masks):
    """The objective written out with NumPy, given the dropout masks (0/1 arrays) per layer."""
    layers = model.layers(params)
    a = X * masks[0] / (1 - model.input_dropout)
    for k, (W, b) in enumerate(layers[:-1], start=1):
        a = np.maximum(a @ W + b, 0) * masks[k] / (1 - model.dropout)
    z = a @ layers[-1][0] + layers[-1][1]
    cross_entropy = np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y])
    return cross_entropy + 0.5 * model.l2 * sum(np.sum(W ** 2) for W, _ in layers)


def python_masks(model, rows, calls):
    """The dropout masks drawn from adamnb.backends.random's element function, run as plain Python."""
    masks = []
    for k, width in enumerate(model.sizes[:-1]):
        p = model.input_dropout if k == 0 else model.dropout
        key = stream_key(model.seed, calls, k)
        with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as intended
            u = np.array([uniform_at(key, i) for i in range(rows * width)], dtype=np.float32)
        masks.append((u >= np.float32(p)).reshape(rows, width) if p > 0 else np.ones((rows, width)))
    return masks


@pytest.mark.parametrize("options", [{}, {"dropout": 0.5}, {"dropout": 0.25, "input_dropout": 0.2,
                                                            "l2": 0.01}])
def test_objective_matches_numpy_reference(options):
    model = MLP((9, 7, 6, 4), dtype=np.float64, seed=11, **options)
    params = random_params(model, seed=5)
    X, y = problem(model.sizes, rows=13)
    masks = python_masks(model, 13, model.training_calls)
    f, _ = model.loss_and_grad(params, X, y)
    assert f == pytest.approx(reference_objective(model, params, X, y, masks), rel=1e-12)


@pytest.mark.parametrize("make, rtol", [
    (lambda dtype: MLP((20, 16, 5), dropout=0.3, dtype=dtype, seed=2), 1e-3),
    (lambda dtype: Sequential([Conv2D(3, 3, activation="relu"), MaxPool2D(2), Dropout(0.3),
                               Flatten(), Dense(5, activation="relu"), Dropout(0.5), Dense(3)],
                              input_shape=(7, 8, 2), dtype=dtype, seed=2), 2e-3),
], ids=["mlp", "cnn"])
def test_float32_gradient_agrees_with_float64(make, rtol):
    m64, m32 = make(np.float64), make(np.float32)
    params = random_params(m64)
    rng = np.random.default_rng(0)
    X, y = rng.random((32, *m64.input_shape)), rng.integers(0, m64.n_classes, 32)
    f64, g64 = m64.loss_and_grad(params, X, y)
    f32, g32 = m32.loss_and_grad(params.astype(np.float32), X.astype(np.float32), y)
    assert g32.dtype == np.float32
    assert f32 == pytest.approx(f64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=rtol, atol=1e-5)


def test_layers_are_views_in_layout_order():
    model = MLP((3, 4, 2))
    params = np.arange(model.n_params, dtype=np.float32)
    assert model.n_params == 3 * 4 + 4 + 4 * 2 + 2
    (W1, b1), (W2, b2) = model.layers(params)
    np.testing.assert_array_equal(W1, np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(b1, np.arange(12, 16))
    np.testing.assert_array_equal(W2, np.arange(16, 24).reshape(4, 2))
    np.testing.assert_array_equal(b2, [24, 25])
    W2[0, 1] = -1
    assert params[17] == -1


def test_init_is_seeded_glorot_uniform():
    model = MLP((30, 20, 10))
    a, b = model.init(7), model.init(7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, model.init(8))
    assert a.dtype == np.float32
    (W1, b1), (W2, b2) = model.layers(a)
    assert np.all(b1 == 0) and np.all(b2 == 0)
    assert np.abs(W1).max() <= np.sqrt(6 / 50) and np.abs(W1).max() > 0.9 * np.sqrt(6 / 50)
    assert np.abs(W2).max() <= np.sqrt(6 / 30)


def test_dropout_keeps_units_with_probability_one_minus_p():
    model = MLP((50, 2000, 2), dropout=0.3, seed=4)
    params = model.init(0)
    (W1, b1), _ = model.layers(params)
    W1[...] = 0
    b1[...] = 1  # every hidden unit is 1 before dropout
    X, y = problem(model.sizes, rows=64, dtype=np.float32)
    hidden = model.activations(params, X, call=0)[0]
    kept = hidden > 0
    assert abs(kept.mean() - 0.7) < 0.01  # 128,000 units: the standard error is 0.0013
    np.testing.assert_allclose(hidden[kept], np.float32(1 / 0.7), rtol=1e-7)


def test_masks_depend_on_seed_and_call_only():
    X, y = problem((12, 10, 3), rows=16, dtype=np.float32)
    runs = []
    for seed in (1, 1, 2):
        model = MLP((12, 10, 3), dropout=0.5, seed=seed)
        params = random_params(model)
        runs.append([model.loss_and_grad(params, X, y)[1].copy() for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[0][1])  # a new call draws new masks
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_evaluate_matches_scipy_and_predict():
    model = SoftmaxRegression(15, 4, l2=0.5, dtype=np.float64)
    params = random_params(model)
    X, y = problem(model.sizes, rows=4501)  # crosses the evaluation chunks
    loss, accuracy = model.evaluate(params, X, y)
    (W, b), = model.layers(params)
    z = X @ W + b
    assert loss == pytest.approx(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]),
                                 rel=1e-12)
    assert accuracy == np.mean(model.predict(params, X) == y)
    np.testing.assert_allclose(model.logits(params, X), z, rtol=1e-13)
    # loss() is the objective: cross-entropy plus the L2 penalty.
    assert model.loss(params, X, y) == pytest.approx(loss + 0.25 * np.sum(W ** 2), rel=1e-12)


def test_out_buffer_is_used_and_checked():
    model = MLP((5, 4, 3), dtype=np.float32)
    params = model.init(0)
    X, y = problem(model.sizes, dtype=np.float32)
    out = np.empty_like(params)
    f, g = model.loss_and_grad(params, X, y, out=out)
    assert g is out
    with pytest.raises(ValueError, match="out must be"):
        model.loss_and_grad(params, X, y, out=np.empty(params.size, dtype=np.float64))
    with pytest.raises(ValueError, match="shares memory with params"):
        model.loss_and_grad(params, X, y, out=params)


def test_nan_parameters_give_a_nan_loss():
    model = MLP((5, 4, 3), dtype=np.float64)
    params = model.init(0)
    params[0] = np.nan
    X, y = problem(model.sizes)
    X[:, 0] = 1.0
    f, g = model.loss_and_grad(params, X, y)
    assert np.isnan(f)
    loss, accuracy = model.evaluate(params, X, y)
    assert np.isnan(loss) and accuracy == 0  # NaN logits never count as a correct prediction


@pytest.mark.parametrize("kwargs, message", [
    ({"sizes": (5,)}, "sizes"),
    ({"sizes": (5, 0, 3)}, "sizes"),
    ({"sizes": (5, 1)}, "2 classes"),
    ({"dropout": 1.0}, "dropout"),
    ({"input_dropout": -0.1}, "input_dropout"),
    ({"l2": -1}, "l2"),
    ({"dtype": np.int32}, "dtype"),
    ({"seed": 1.5}, "seed"),
])
def test_invalid_model_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(**{"sizes": (5, 4, 3), **kwargs})


def test_invalid_inputs():
    model = MLP((5, 4, 3))
    params = model.init(0)
    X, y = problem(model.sizes, dtype=np.float32)
    with pytest.raises(ValueError, match="flat array of 39"):
        model.loss_and_grad(params[:-1], X, y)
    with pytest.raises(ValueError, match="dtype float64"):
        model.loss_and_grad(params.astype(np.float64), X, y)
    with pytest.raises(ValueError, match=r"shape \(n, 5\)"):
        model.loss_and_grad(params, X[:, :4], y)
    with pytest.raises(ValueError, match="labels must lie in 0 .. 2"):
        model.loss_and_grad(params, X, np.full(len(y), 3))
    with pytest.raises(ValueError, match="integer labels"):
        model.loss_and_grad(params, X, y.astype(float))
    with pytest.raises(ValueError, match="empty"):
        model.loss_and_grad(params, X[:0], y[:0])
    with pytest.raises(ValueError, match="empty"):
        model.loss(params, X[:0], y[:0], training=True)
