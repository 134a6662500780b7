"""adamnb.minibatches: epochs, coverage, reproducibility, errors."""

import numpy as np
import pytest

import adamnb


def test_each_epoch_covers_every_row_once_and_counts():
    X, y = np.arange(10).reshape(10, 1), np.arange(10)
    batches = adamnb.minibatches(X, y, 3, seed=0)
    assert batches.batches_per_epoch == 4
    rows = [next(batches) for _ in range(4)]
    assert batches.epoch == 1 and batches.step == 4
    assert sorted(np.concatenate([b[1] for b in rows]).tolist()) == list(range(10))
    assert [len(b[1]) for b in rows] == [3, 3, 3, 1]
    assert all((bx[:, 0] == by).all() for bx, by in rows)  # rows stay aligned


def test_seed_reproducibility_and_no_shuffle():
    X = np.arange(20)
    a = [next(adamnb.minibatches(X, batch_size=4, seed=3))[0].tolist() for _ in range(2)]
    assert a[0] == a[1]
    plain = adamnb.minibatches(X, batch_size=5, shuffle=False)
    assert next(plain)[0].tolist() == [0, 1, 2, 3, 4]


def test_drop_last():
    batches = adamnb.minibatches(np.arange(10), batch_size=4, drop_last=True, seed=0)
    assert batches.batches_per_epoch == 2
    assert [len(next(batches)[0]) for _ in range(4)] == [4, 4, 4, 4]


@pytest.mark.parametrize("call, message", [
    (lambda: adamnb.minibatches(np.ones(5), np.ones(4), 2), "same length"),
    (lambda: adamnb.minibatches(np.ones(5), batch_size=0), "batch_size"),
    (lambda: adamnb.minibatches(np.ones(5)), "needs a batch_size"),
    (lambda: adamnb.minibatches(batch_size=3), "at least one data array"),
    (lambda: adamnb.minibatches(np.ones(3), batch_size=5, drop_last=True), "no batch"),
])
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
