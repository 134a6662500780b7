"""ReduceLROnPlateau in runs: minimize feeds it the objective (each step; each epoch's mean for a
minibatch stream) exactly as a hand-written loop that calls ``schedule.step(f)`` does, on a copy;
the optimizer classes take the documented call; a checkpoint carries the schedule's state, bit for
bit."""

import math

import numpy as np
import pytest
from scipy.optimize import rosen, rosen_der

import adamnb
from adamnb.optim import schedules

X0 = np.array([-1.2, 1.0])


def plateau():
    return schedules.ReduceLROnPlateau(0.02, patience=3, factor=0.5, threshold=1e-3)


def by_hand(optimizer, steps):
    """The loop torch's documentation shows: a step, then ``scheduler.step(loss)``."""
    x = X0.copy()
    for _ in range(steps):
        optimizer.step(x, rosen_der(x))
        optimizer.schedule.step(rosen(x))
    return x


@pytest.mark.parametrize("method", ["adam", "rmsprop", "schedule_free_adamw"])
def test_minimize_feeds_f_after_every_step(method):
    given = plateau()
    res = adamnb.minimize(rosen, X0, method=method, jac=rosen_der,
                          options={"lr": given, "maxiter": 400, "gtol": 0})
    optimizer = adamnb.optim.OPTIMIZERS[method](lr=plateau())
    x = by_hand(optimizer, 400)
    assert res.get("y", res.x).tobytes() == x.tobytes()
    assert optimizer.schedule.last_lr < 0.02  # it did reduce the rate
    assert given.state() == plateau().state()  # minimize ran on a copy


def test_the_compiled_objective_takes_the_host_loop_with_the_same_bits():
    rosenbrock = adamnb.functions.get("rosenbrock")
    options = {"lr": plateau(), "maxiter": 300, "gtol": 0}
    jitted = adamnb.minimize(rosenbrock.value_and_grad, X0, jac=True, options=options)
    python = adamnb.minimize(rosen, X0, jac=rosen_der, options=options)
    assert jitted.x.tobytes() == python.x.tobytes()


def test_a_minibatch_stream_feeds_the_mean_of_each_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=96)

    def loss(w, Xb, yb):
        return 0.5 * float(np.mean((Xb @ w - yb) ** 2))

    def grad(w, Xb, yb):
        return Xb.T @ (Xb @ w - yb) / len(yb)

    def schedule():
        return schedules.ReduceLROnPlateau(0.2, patience=1, factor=0.5, threshold=0.0)

    res = adamnb.minimize(loss, np.zeros(3), args=adamnb.minibatches(X, y, 32, seed=1),
                          jac=grad, options={"lr": schedule(), "maxiter": 90})
    # By hand: the losses of an epoch's three minibatches (the first at x0), their mean given
    # to the schedule once the epoch's last minibatch is drawn.
    batches = adamnb.minibatches(X, y, 32, seed=1)
    optimizer, w = adamnb.SGD(lr=schedule()), np.zeros(3)
    batch = next(batches)
    values, epochs = [loss(w, *batch)], []
    g = grad(w, *batch)
    for _ in range(90):
        optimizer.step(w, g)
        batch = next(batches)
        values.append(loss(w, *batch))
        g = grad(w, *batch)
        if len(values) == 3:
            epochs.append(math.fsum(values) / 3)
            optimizer.schedule.step(epochs[-1])
            values = []
    res_sgd = adamnb.minimize(loss, np.zeros(3), args=adamnb.minibatches(X, y, 32, seed=1),
                              jac=grad, method="sgd", options={"lr": schedule(), "maxiter": 90})
    assert res_sgd.x.tobytes() == w.tobytes()
    assert optimizer.schedule.last_lr < 0.2 and len(epochs) == 30
    assert np.isfinite(res.x).all()


def test_minimize_batch_refuses_a_schedule_that_follows_one_objective():
    rosenbrock = adamnb.functions.get("rosenbrock")
    with pytest.raises(ValueError, match="follows the objective"):
        adamnb.minimize_batch(rosenbrock.value_and_grad, np.stack([X0, X0]), jac=True,
                              options={"lr": plateau(), "maxiter": 5})


@pytest.mark.parametrize("through_file", [False, True])
def test_a_checkpoint_carries_the_schedule_state_bit_for_bit(tmp_path, through_file):
    uninterrupted = adamnb.Adam(lr=plateau())
    x_full = by_hand(uninterrupted, 300)

    first = adamnb.Adam(lr=plateau())
    x = by_hand(first, 150)
    snapshot = first.state_dict()
    assert snapshot["options"]["lr"] is not first.schedule  # a snapshot, not the live object
    if through_file:
        adamnb.optim.save_state_dict(snapshot, tmp_path / "state.npz")
        snapshot = adamnb.optim.load_state_dict(tmp_path / "state.npz")
    first.schedule.step(1e9)  # a later change of the original cannot reach the snapshot
    second = adamnb.Adam()
    second.load_state_dict(snapshot)
    assert second.schedule.state() != plateau().state()  # the reductions so far came along
    for _ in range(150):
        second.step(x, rosen_der(x))
        second.schedule.step(rosen(x))
    assert x.tobytes() == x_full.tobytes()
    assert second.schedule.state() == uninterrupted.schedule.state()
