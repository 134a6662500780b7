"""Models are safe to share between threads (issue 17, item 2).

Every public method of every model type is called on one shared model from several threads at
once (``concurrent.futures.ThreadPoolExecutor``: the kernels release the GIL, so the calls really
overlap) and must return exactly what the same calls return one after another. Training calls
each draw the masks of their own call number, so the threaded results are the serial results of
call numbers 0..n-1 in some order.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from adamnb.nn import MLP, Sequential, SoftmaxRegression
from adamnb.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D

THREADS = 4
ROUNDS = 3


def models():
    cases = {
        "softmax": (SoftmaxRegression(784, 10), 784),
        "mlp": (MLP((784, 256, 128, 10), dropout=0.5, input_dropout=0.2, l2=1e-4, seed=1), 784),
        # the Keras article's CNN with fewer filters and units
        "cnn": (Sequential([Conv2D(8, 3, activation="relu"), MaxPool2D(2), Dropout(0.25),
                            Flatten(), Dense(32, activation="relu"), Dropout(0.5), Dense(10)],
                           input_shape=(28, 28, 1), seed=2), 784),
    }
    return cases


def data(n_inputs, rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((rows, n_inputs), dtype=np.float32), rng.integers(0, 10, rows)


def _run_threaded(calls):
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda call: call(), calls))


def _same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b or (a != a and b != b)


@pytest.mark.parametrize("name", list(models()))
def test_evaluation_methods_from_threads_match_serial_calls(name):
    model, n_inputs = models()[name]
    params = model.init(0)
    # Batches of different sizes at once: each call also needs its own scratch of its size.
    sizes = (3000, 2500, 700, 3000) if name != "cnn" else (300, 250, 70, 300)
    batches = [data(n_inputs, rows, seed) for seed, rows in enumerate(sizes)]
    methods = {
        "evaluate": lambda X, y: model.evaluate(params, X, y),
        "loss": lambda X, y: model.loss(params, X, y),
        "logits": lambda X, y: model.logits(params, X),
        "predict": lambda X, y: model.predict(params, X),
        "activations": lambda X, y: tuple(model.activations(params, X[:50], call=3)),
    }
    for method, call in methods.items():
        serial = [call(X, y) for X, y in batches]
        for _ in range(ROUNDS):
            threaded = _run_threaded([lambda X=X, y=y, call=call: call(X, y)
                                      for X, y in batches])
            for k, (a, b) in enumerate(zip(serial, threaded)):
                assert _same(a, b), (method, k)


@pytest.mark.parametrize("name", list(models()))
def test_training_calls_from_threads_each_draw_their_own_masks(name):
    model, n_inputs = models()[name]
    params = model.init(0)
    X, y = data(n_inputs, 512 if name != "cnn" else 64)
    calls = THREADS * 2
    serial = [model.loss_and_grad(params, X, y) for _ in range(calls)]
    serial += [(model.loss(params, X, y, training=True), None) for _ in range(calls)]
    assert model.training_calls == 2 * calls
    for _ in range(ROUNDS):
        model.training_calls = 0
        threaded = _run_threaded([lambda: model.loss_and_grad(params, X, y)] * calls)
        threaded += _run_threaded([lambda: (model.loss(params, X, y, training=True), None)]
                                  * calls)
        assert model.training_calls == 2 * calls
        # Each threaded call is the serial call of one call number, and no number is used twice.
        # (The gradient calls take numbers 0..calls-1 in some order, then the loss calls.)
        # Without dropout every call gives the same result, so only the values are compared.
        distinct = any(getattr(block, "rate", 0) > 0 for block in model.blocks)
        for part in (slice(0, calls), slice(calls, 2 * calls)):
            matched = []
            for f, g in threaded[part]:
                found = [k for k, (f0, g0) in enumerate(serial[part])
                         if f == f0 and (g is None or _same(g, g0))]
                assert len(found) == (1 if distinct else calls), f
                matched.append(found[0])
            if distinct:
                assert sorted(matched) == list(range(calls))


@pytest.mark.parametrize("name", list(models()))
def test_init_and_layers_from_threads(name):
    model, _ = models()[name]
    serial = [model.init(seed) for seed in range(THREADS)]
    threaded = _run_threaded([lambda seed=seed: model.init(seed) for seed in range(THREADS)])
    assert all(_same(a, b) for a, b in zip(serial, threaded))
    views = _run_threaded([lambda p=p: model.layers(p) for p in threaded])
    for params, layers in zip(threaded, views):
        assert all(np.shares_memory(W, params) for W, _ in layers)
