"""Minibatches for stochastic objectives in :func:`adamnb.minimize`.

``minimize`` treats an iterator passed as ``args`` as a stream of per-step extra arguments: each
update step draws one element (a tuple) and calls ``fun(x, *batch)`` and ``jac(x, *batch)`` with it.
:func:`minibatches` makes such a stream from data arrays, shuffled per epoch from a seed, so a run
is reproducible.

Example
-------
>>> import numpy as np, adamnb
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(256, 3)); y = X @ np.array([1.0, -2.0, 0.5])
>>> def loss(w, Xb, yb): r = Xb @ w - yb; return 0.5 * np.mean(r ** 2)
>>> def grad(w, Xb, yb): return Xb.T @ (Xb @ w - yb) / len(yb)
>>> batches = adamnb.minibatches(X, y, 32, seed=1)
>>> res = adamnb.minimize(loss, np.zeros(3), args=batches, jac=grad,
...                       options={"lr": 0.05, "maxiter": 800})
>>> bool(np.allclose(res.x, [1.0, -2.0, 0.5], atol=1e-2)), batches.epoch
(True, 100)
"""

import numpy as np

__all__ = ["minibatches", "Minibatches"]


class Minibatches:
    """An endless iterator of shuffled minibatches; see :func:`minibatches`.

    Attributes
    ----------
    epoch : int
        Number of completed passes over the data.
    step : int
        Number of batches drawn so far.
    batches_per_epoch : int
    """

    def __init__(self, arrays, batch_size, shuffle, seed, drop_last):
        if not arrays:
            raise ValueError("minibatches needs at least one data array")
        arrays = tuple(np.asarray(a) for a in arrays)
        n = len(arrays[0]) if arrays[0].ndim else 0
        for k, a in enumerate(arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(f"all arrays must have the same length along axis 0: array 0 has "
                                 f"{n} rows, array {k} has shape {a.shape}")
        if n == 0:
            raise ValueError("minibatches needs at least one row of data")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"Invalid batch_size: {batch_size!r}; expected a positive integer")
        if drop_last and batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} rows and drop_last=True "
                             "would yield no batch")
        self.arrays, self.batch_size = arrays, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.rng = np.random.default_rng(seed)
        self.n = n
        self.batches_per_epoch = n // self.batch_size if drop_last else -(-n // self.batch_size)
        self.epoch = self.step = 0
        self._order, self._position = None, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._position == 0:
            self._order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        start = self._position * self.batch_size
        rows = self._order[start:start + self.batch_size]
        self.step += 1
        self._position += 1
        if self._position == self.batches_per_epoch:
            # The epoch counts as soon as its last batch is out, so `epoch` is exact after a run.
            self.epoch += 1
            self._position = 0
        return tuple(a[rows] for a in self.arrays)


def minibatches(*arrays, batch_size=None, shuffle=True, seed=None, drop_last=False):
    """An endless iterator of minibatches ``(X[rows], y[rows], ...)``, for ``minimize(args=...)``.

    Parameters
    ----------
    *arrays : array_like
        Data arrays sharing their first axis (e.g. ``X, y``). A trailing integer is taken as
        ``batch_size``, so ``minibatches(X, y, 64)`` works.
    batch_size : int
        Rows per batch; the last batch of an epoch is smaller unless ``drop_last``.
    shuffle : bool, default True
        Draw a new permutation of the rows at every epoch.
    seed : int or numpy.random.Generator, optional
        Seed of the permutations: the same seed gives the same batches.
    drop_last : bool, default False
        Skip the incomplete last batch of each epoch.

    Returns
    -------
    Minibatches
        Endless; ``.epoch`` counts completed passes, ``.step`` batches drawn.
    """
    if batch_size is None and arrays and isinstance(arrays[-1], (int, np.integer)) \
            and not isinstance(arrays[-1], bool):
        arrays, batch_size = arrays[:-1], arrays[-1]
    if batch_size is None:
        raise ValueError("minibatches needs a batch_size")
    return Minibatches(arrays, batch_size, shuffle, seed, drop_last)
