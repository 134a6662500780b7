"""adamnb.nn.training: the explicit loop and the minimize route, on a small synthetic problem."""

import numba
import numpy as np
import pytest
from scipy import stats

import adamnb
from adamnb.backends.random import stream_key, uniform_at
from adamnb.nn import MLP, SoftmaxRegression
from adamnb.nn.training import History, train, train_minimize


def blobs(n=600, features=8, classes=3, seed=0):
    """Gaussian classes with distinct means: a softmax regression separates them well."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.0, size=(classes, features))
    y = rng.integers(0, classes, n)
    X = (means[y] + rng.normal(size=(n, features))).astype(np.float32)
    return X[:500], y[:500], X[500:], y[500:]


def test_train_learns_and_records_every_epoch():
    X, y, Xt, yt = blobs()
    model = MLP((8, 16, 3), dropout=0.1, seed=1)
    params = model.init(0)
    history = train(model, params, adamnb.Adam(lr=0.01, backend="cpu"), X, y, epochs=5,
                    batch_size=32, X_test=Xt, y_test=yt, progress=False)
    assert len(history) == 5
    assert history["epoch"] == [1, 2, 3, 4, 5]
    assert history["steps"] == [16, 32, 48, 64, 80]  # 500 rows in batches of 32: 16 per epoch
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["test_accuracy"][-1] > 0.9
    loss, accuracy = model.evaluate(params, Xt, yt)
    assert history["test_loss"][-1] == loss and history["test_accuracy"][-1] == accuracy
    assert all(s > 0 for s in history["seconds"])
    assert set(history.to_dict()) == {"epoch", "train_loss", "test_loss", "test_accuracy",
                                      "seconds", "steps"}


def test_train_loss_is_the_mean_minibatch_objective():
    X, y, _, _ = blobs()
    model = SoftmaxRegression(8, 3, l2=0.01)
    params = model.init(0)
    replay = params.copy()
    history = train(model, params, adamnb.SGD(lr=0.05), X, y, epochs=1, batch_size=100,
                    progress=False)
    # Replay the epoch by hand: same batches (same seed), objective before each step.
    batches = adamnb.minibatches(X, y, batch_size=100, seed=0)
    optimizer = adamnb.SGD(lr=0.05)
    losses = []
    for _ in range(5):
        Xb, yb = next(batches)
        f, g = model.loss_and_grad(replay, Xb, yb)
        losses.append(f)
        optimizer.step(replay, g)
    assert history["train_loss"][0] == pytest.approx(np.mean(losses), rel=1e-12)
    np.testing.assert_array_equal(params, replay)


@pytest.mark.parametrize("method, options", [("adam", {"lr": 0.01}),
                                             ("sgd", {"lr": 0.1, "momentum": 0.9,
                                                      "nesterov": True}),
                                             ("adagrad", {"lr": 0.05})])
def test_minimize_route_gives_the_same_bits_as_the_loop(method, options):
    X, y, Xt, yt = blobs()
    runs = []
    for route in ("loop", "minimize"):
        model = MLP((8, 12, 3), dropout=0.2, seed=5)
        params0 = model.init(3)
        if route == "loop":
            params = params0.copy()
            optimizer = getattr(adamnb, {"adam": "Adam", "sgd": "SGD",
                                         "adagrad": "Adagrad"}[method])(**options)
            history = train(model, params, optimizer, X, y, epochs=3, batch_size=64,
                            X_test=Xt, y_test=yt, seed=7, progress=False)
        else:
            before = params0.copy()
            result, history = train_minimize(model, params0, method, X, y, epochs=3,
                                             batch_size=64, options=options, X_test=Xt,
                                             y_test=yt, seed=7, progress=False)
            np.testing.assert_array_equal(params0, before)  # x0 is never modified
            assert result.nit == 3 * 8 and result.status == 1
            params = result.x
        runs.append((params, history))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1]["train_loss"] == runs[1][1]["train_loss"]
    assert runs[0][1]["test_accuracy"] == runs[1][1]["test_accuracy"]


def test_schedule_alpha_over_sqrt_t():
    X, y, _, _ = blobs()
    model = SoftmaxRegression(8, 3)
    result, history = train_minimize(model, model.init(0), "adagrad", X, y, epochs=2,
                                     batch_size=50, progress=False,
                                     options={"lr": adamnb.optim.schedules.InverseSqrt(0.5)})
    assert result.nit == 20 and len(history) == 2 and history[0]["test_loss"] is None


def test_divergence_is_reported():
    X, y, _, _ = blobs()
    X[7, 0] = np.inf
    model = SoftmaxRegression(8, 3)
    params = model.init(0)
    with np.errstate(invalid="ignore"):  # inf * 0 in the products: the point of the test
        history = train(model, params, adamnb.Adam(lr=0.01), X, y, epochs=3,
                        batch_size=500, progress=False)
    assert len(history) == 1 and np.isnan(history[0]["train_loss"])
    with np.errstate(invalid="ignore"):
        result, history = train_minimize(model, model.init(0), "adam", X, y, epochs=3,
                                         batch_size=500, progress=False)
    assert result.status == 3 and not result.success
    # The epoch the run stopped in is recorded, with its non-finite loss.
    assert len(history) == 1 and not np.isfinite(history[0]["train_loss"])


class FailingAfter(SoftmaxRegression):
    """A model whose objective turns NaN at its ``calls``-th training call."""

    def __init__(self, calls):
        super().__init__(8, 3)
        self.calls = calls

    def loss_and_grad(self, params, X, y, out=None):
        f, g = super().loss_and_grad(params, X, y, out=out)
        return (np.nan if self.training_calls >= self.calls else f), g


def test_divergence_mid_run_is_recorded_on_the_minimize_route():
    X, y, Xt, yt = blobs()
    model = FailingAfter(calls=13)  # 5 steps per epoch: the 13th call is in epoch 3
    result, history = train_minimize(model, model.init(0), "adam", X, y, epochs=10,
                                     batch_size=100, X_test=Xt, y_test=yt, progress=False)
    assert result.status == 3 and result.nit == 11
    # Step 12's objective was NaN, so minimize returned the iterate after step 11.
    assert history["epoch"] == [1, 2, 3] and history["steps"] == [5, 10, 11]
    assert np.isfinite(history["train_loss"][:2]).all() and np.isnan(history[2]["train_loss"])
    # The last record's test figures are those of the last finite iterate, result.x.
    assert history[2]["test_loss"] == model.evaluate(result.x, Xt, yt)[0]


def test_invalid_arguments():
    X, y, Xt, yt = blobs()
    model = SoftmaxRegression(8, 3)
    params = model.init(0)
    with pytest.raises(ValueError, match="epochs"):
        train(model, params, adamnb.Adam(), X, y, epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        train(model, params, adamnb.Adam(), X, y, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="both X_test and y_test"):
        train(model, params, adamnb.Adam(), X, y, epochs=1, X_test=Xt)
    with pytest.raises(ValueError, match="maxiter"):
        train_minimize(model, params, "adam", X, y, epochs=1, options={"maxiter": 5})


def test_history_repr_and_indexing():
    history = History()
    assert repr(history) == "History(0 epochs)"
    history.append(epoch=1, train_loss=0.5, test_loss=0.4, test_accuracy=0.9, seconds=2.0,
                   steps=10)
    assert history[0]["steps"] == 10 and history["seconds"] == [2.0]
    assert "test accuracy 0.9000" in repr(history) and history.total_seconds == 2.0


@numba.njit
def _fill(key, out):
    for i in range(out.size):
        out[i] = uniform_at(key, i)


def test_uniforms_are_uniform_and_identical_in_python_and_compiled_code():
    out = np.empty(200_000, dtype=np.float32)
    _fill(stream_key(42, 0, 1), out)
    assert out.min() >= 0 and out.max() < 1
    assert stats.kstest(out, "uniform").pvalue > 1e-3
    with np.errstate(over="ignore"):
        python = np.array([uniform_at(stream_key(42, 0, 1), i) for i in range(50)])
    np.testing.assert_array_equal(python, out[:50])
    other = np.empty_like(out)
    _fill(stream_key(42, 1, 0), other)
    assert abs(np.corrcoef(out, other)[0, 1]) < 0.01
    with pytest.raises(ValueError, match="seed"):
        stream_key(None)


@pytest.mark.parametrize("optimizer", ["adam", None])
def test_train_names_an_optimizer_that_is_not_one(optimizer):
    X, y, _, _ = blobs()
    model = SoftmaxRegression(8, 3)
    with pytest.raises(TypeError, match="optimizer must be an optimizer object"):
        train(model, model.init(0), optimizer, X, y, epochs=1, progress=False)
