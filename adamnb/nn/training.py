"""Epoch loops for the models of :mod:`adamnb.nn`, with a per-epoch history.

Two ways to train, which give the same bits for the same seeds:

* :func:`train`, an explicit loop with a stateful optimizer
  (``for batch: f, g = model.loss_and_grad(...); optimizer.step(params, g)``), the torch.optim way;
* :func:`train_minimize`, the same steps through :func:`adamnb.minimize` with an
  :func:`adamnb.minibatches` stream as ``args`` (the scipy way); it returns the
  ``OptimizeResult`` beside the history.

Both run one loop, :func:`run_epochs`, over a *batch source*: :class:`HostBatches` slices host
arrays (:func:`adamnb.minibatches`); :class:`adamnb.nn.cuda_models.DeviceBatches` gathers the
same rows on a GPU for :func:`adamnb.nn.cuda_models.train_cuda`.

Every epoch appends one record to a :class:`History`: the mean training objective of the epoch's
minibatches (each evaluated at the parameters the step started from, with that step's dropout, as
Keras and the Adam paper report "training cost"), the test loss and accuracy (no dropout), and the
epoch's training time in seconds (evaluation excluded).

Threads
    The matrix products run in the BLAS's threads. numba's OpenMP threads, when a multi-threaded
    kernel has just run, keep spinning for a while and starve those BLAS threads: on the 2-core
    development machine a training step of the 784-1000-1000-10 MLP took 17 ms instead of 8 with
    the threaded Adam kernel. So give :func:`train` an optimizer created with ``backend="cpu"``
    (the serial kernel: a 2.8-million-parameter Adam step takes under 1 ms); ``Adam()``'s default
    picks the threaded kernel for vectors this long. :func:`train_minimize` passes
    ``parallel=False`` to ``minimize`` unless told otherwise. Setting ``OMP_WAIT_POLICY=passive``
    or ``NUMBA_THREADING_LAYER=workqueue`` before the first kernel runs removes the contention,
    and then the threaded kernel is as fast.
"""

import math
import sys
import time

import numpy as np

from adamnb.optimize import minibatches, minimize

__all__ = ["History", "train", "train_minimize", "run_epochs", "HostBatches", "check_run"]


class History:
    """Per-epoch records of a training run.

    Attributes
    ----------
    records : list of dict
        One per epoch: ``epoch`` (1-based), ``train_loss``, ``test_loss`` and ``test_accuracy``
        (None without test data), ``seconds`` (training time of the epoch) and ``steps`` (update
        steps so far).
    """

    def __init__(self):
        self.records = []

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        """``history["train_loss"]`` is the list of that field over the epochs."""
        if isinstance(key, str):
            return [record[key] for record in self.records]
        return self.records[key]

    def append(self, **record):
        self.records.append(record)

    @property
    def total_seconds(self):
        return float(sum(self["seconds"]))

    def to_dict(self):
        """A JSON-ready dict of lists, one per field."""
        fields = self.records[0].keys() if self.records else ()
        return {field: self[field] for field in fields}

    def __repr__(self):
        if not self.records:
            return "History(0 epochs)"
        last = self.records[-1]
        accuracy = last["test_accuracy"]
        tail = "" if accuracy is None else f", test accuracy {accuracy:.4f}"
        return (f"History({len(self)} epochs, train loss {last['train_loss']:.4g}{tail}, "
                f"{self.total_seconds:.1f} s)")


def _check_run(model, params, X, y, X_test, y_test, epochs, batch_size):
    model.check_params(params)
    check_run(epochs, batch_size, X_test, y_test)
    X, y = model.check_data(X, y)
    if X_test is not None:
        X_test, y_test = model.check_data(X_test, y_test)
    return X, y, X_test, y_test


def _progress_bar(total, progress, description):
    """tqdm over the steps, shown when asked or (progress=None) when stderr is a terminal."""
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=description, unit="step", leave=False)


class _EpochRecorder:
    """Shared bookkeeping of both loops: minibatch losses in, one History record per epoch."""

    def __init__(self, model, X_test, y_test, steps_per_epoch, bar, train_data=None):
        self.model, self.X_test, self.y_test = model, X_test, y_test
        self.train_data = train_data
        self.steps_per_epoch, self.bar = steps_per_epoch, bar
        self.history = History()
        self.losses = []
        self.steps = 0
        self.clock = time.perf_counter()

    def loss(self, f):
        self.losses.append(f)

    def stepped(self, params):
        """After each update; closes the epoch (and evaluates) after its last step."""
        self.steps += 1
        if self.bar is not None:
            self.bar.update()
        if self.steps % self.steps_per_epoch == 0:
            self._record(params, self.steps_per_epoch)

    def close_unfinished(self, params):
        """Record the epoch a run stopped in (e.g. on a non-finite loss) from its losses so far."""
        if self.losses:
            self._record(params, len(self.losses))

    def _record(self, params, n_losses):
        """Append the epoch made of the first ``n_losses`` losses, evaluated at ``params``."""
        seconds = time.perf_counter() - self.clock
        train_loss = float(np.mean(self.losses[:n_losses]))
        del self.losses[:n_losses]
        test_loss = test_accuracy = None
        if self.X_test is not None:
            test_loss, test_accuracy = self.model.evaluate(params, self.X_test, self.y_test)
        extra = {}
        if self.train_data is not None:
            # The objective on the whole training set at the epoch's end, without dropout
            # (evaluation time excluded from the epoch's seconds, as the test evaluation's).
            extra["train_cost"] = self.model.loss(params, *self.train_data)
        self.history.append(epoch=len(self.history) + 1, train_loss=train_loss,
                            test_loss=test_loss, test_accuracy=test_accuracy,
                            seconds=seconds, steps=self.steps, **extra)
        if self.bar is not None:
            shown = {"loss": f"{train_loss:.4g}"}
            if test_accuracy is not None:
                shown["test acc"] = f"{test_accuracy:.4f}"
            self.bar.set_postfix(shown, refresh=False)
        self.clock = time.perf_counter()


class HostBatches:
    """The minibatches of :func:`adamnb.minibatches` (host arrays), as a batch source of
    :func:`run_epochs`.

    Parameters
    ----------
    X, y : ndarray
        Inputs and labels, already checked (``model.check_data``).
    batch_size : int
    seed : int
        Seed of the row order (a fresh permutation per epoch).
    """

    def __init__(self, X, y, batch_size, seed):
        self._stream = minibatches(X, y, batch_size=batch_size, seed=seed)
        #: Update steps per epoch (the last batch of an epoch may be smaller).
        self.steps_per_epoch = self._stream.batches_per_epoch

    def __next__(self):
        return next(self._stream)

    @staticmethod
    def gradient_buffer(params):
        """Where the loop's gradients go: an array like ``params``."""
        return np.empty_like(params)

    @staticmethod
    def synchronize():
        """Host work is done when it returns; nothing to wait for."""


def _check_optimizer(optimizer):
    """Refuse what has no ``step(params, gradient)`` (a method name, say) before any epoch."""
    if not callable(getattr(optimizer, "step", None)):
        hint = (f"; for the method {optimizer!r} give an optimizer such as "
                f"adamnb.optim.OPTIMIZERS[{optimizer!r}](lr=...), or call train_minimize"
                if isinstance(optimizer, str) else "")
        raise TypeError(f"optimizer must be an optimizer object with a step(params, gradient) "
                        f"method (e.g. adamnb.Adam(lr=1e-3)), got {optimizer!r}{hint}")


def run_epochs(model, params, optimizer, batches, *, epochs, X_test=None, y_test=None,
               progress=None, train_data=None):
    """The one training loop: ``epochs`` epochs over a batch source, updating ``params`` in place.

    Each step draws ``(Xb, yb) = next(batches)``, computes ``f, g = model.loss_and_grad(params,
    Xb, yb, out=gradient)``, records ``f`` and calls ``optimizer.step(params, gradient)``;
    after an epoch's last step the source is synchronised (so that the epoch's time includes its
    work on a GPU) and the epoch is recorded, with ``model.evaluate(params, X_test, y_test)``.
    :func:`train` runs it with :class:`HostBatches`,
    :func:`adamnb.nn.cuda_models.train_cuda` with batches gathered on the device.

    Parameters
    ----------
    model : object with ``loss_and_grad`` and ``evaluate``
        A :class:`adamnb.nn.Sequential` model, or an :class:`adamnb.nn.cuda_models.CudaMLP`.
    params : array
        Updated in place.
    optimizer : adamnb.Optimizer
    batches : batch source
        ``next(batches)`` gives ``(Xb, yb)``; it has ``steps_per_epoch``,
        ``gradient_buffer(params)`` and ``synchronize()``.
    epochs : int
    X_test, y_test : arrays, optional
        Evaluated after every epoch.
    progress : bool or None
        Show a progress bar (None: when stderr is a terminal).
    train_data : tuple (X, y), optional
        When given, every epoch's record also holds ``train_cost``: ``model.loss(params, X, y)``
        at the epoch's end, the objective on these rows without dropout.

    Returns
    -------
    History
        A non-finite training loss stops the run after the epoch in which it occurs.
    """
    _check_optimizer(optimizer)
    steps_per_epoch = batches.steps_per_epoch
    bar = _progress_bar(epochs * steps_per_epoch, progress, type(optimizer).__name__)
    recorder = _EpochRecorder(model, X_test, y_test, steps_per_epoch, bar, train_data)
    gradient = batches.gradient_buffer(params)
    try:
        for _ in range(epochs):
            for step in range(steps_per_epoch):
                Xb, yb = next(batches)
                f, _ = model.loss_and_grad(params, Xb, yb, out=gradient)
                recorder.loss(f)
                optimizer.step(params, gradient)
                if step == steps_per_epoch - 1:
                    batches.synchronize()  # the epoch's time includes its last update
                recorder.stepped(params)
            if not math.isfinite(recorder.history[-1]["train_loss"]):
                break
    finally:
        if bar is not None:
            bar.close()
    return recorder.history


def check_run(epochs, batch_size, X_test, y_test):
    """ValueError unless ``epochs`` and ``batch_size`` are positive integers and the test data
    are both given or both omitted."""
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"Invalid epochs: {epochs!r}; expected a positive integer")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size!r}; expected a positive integer")


def train(model, params, optimizer, X, y, *, epochs, batch_size=128, X_test=None, y_test=None,
          seed=0, progress=None, evaluate_train=False):
    """Train ``model`` with a stateful optimizer, updating ``params`` in place.

    :func:`run_epochs` over host minibatches (:class:`HostBatches`).

    Parameters
    ----------
    model : adamnb.nn.Sequential
        E.g. an :class:`adamnb.nn.MLP` or :func:`adamnb.nn.keras_mnist_cnn`.
    params : ndarray
        The flat parameters (e.g. ``model.init(seed)``), updated in place.
    optimizer : adamnb.Optimizer
        E.g. ``adamnb.Adam(lr=1e-3, backend="cpu")`` (see the module notes on threads). Its step
        count carries over between calls, as torch.optim's does.
    X, y : array_like
        Training inputs ``(n, *input_shape)`` and integer labels ``(n,)``.
    epochs : int
    batch_size : int, default 128
        The last batch of an epoch is smaller when ``batch_size`` does not divide ``n``.
    X_test, y_test : array_like, optional
        Evaluated after every epoch.
    seed : int, default 0
        Seed of the minibatch order (:func:`adamnb.minibatches`).
    progress : bool or None
        Show a progress bar (None: when stderr is a terminal).
    evaluate_train : bool, default False
        Also record ``train_cost`` each epoch: the objective on the whole training set at the
        epoch's end, without dropout (``train_loss`` is the mean over the epoch's minibatches,
        each with its dropout masks, at the parameters its step started from).

    Returns
    -------
    History
        Per-epoch train loss, test loss and accuracy, and time. A non-finite training loss stops
        the run after the epoch in which it occurs (the history shows it).

    Raises
    ------
    ValueError
        Invalid ``epochs`` or ``batch_size``, data or parameters that do not fit the model.
    TypeError
        ``optimizer`` is not an optimizer (a method name such as ``"adam"``, say).
    """
    _check_optimizer(optimizer)
    X, y, X_test, y_test = _check_run(model, params, X, y, X_test, y_test, epochs, batch_size)
    return run_epochs(model, params, optimizer, HostBatches(X, y, batch_size, seed),
                      epochs=epochs, X_test=X_test, y_test=y_test, progress=progress,
                      train_data=(X, y) if evaluate_train else None)


def train_minimize(model, params0, method, X, y, *, epochs, batch_size=128, options=None,
                   X_test=None, y_test=None, seed=0, progress=None):
    """Train ``model`` through :func:`adamnb.minimize` over a stream of minibatches.

    The run is ``minimize(fun, params0, args=minibatches(X, y, batch_size, seed), jac=True,
    method=method, options={"maxiter": epochs * steps_per_epoch, "parallel": False, **options},
    callback=...)``: every step draws the next minibatch, and the callback closes each epoch.
    With the same seeds it gives the same bits as :func:`train` with the optimizer of the same
    method and options.

    Parameters
    ----------
    model, X, y, epochs, batch_size, X_test, y_test, seed, progress
        As in :func:`train`.
    params0 : ndarray
        The initial parameters (not modified).
    method : str or callable
        Any of ``minimize``'s methods, e.g. ``"adam"``.
    options : dict, optional
        The method's options (``lr`` may be a schedule). ``maxiter`` is set from ``epochs``.

    Returns
    -------
    result : scipy.optimize.OptimizeResult
        ``minimize``'s result (``x`` the trained parameters; ``fun`` the objective on the batch
        drawn after the last step; ``status`` 3 if the objective or gradient became non-finite).
    history : History
        With status 3, the last record is the epoch the run stopped in: its ``train_loss`` is the
        mean of that epoch's losses so far, the non-finite one included, and its test figures are
        those of ``result.x``, the last finite iterate.
    """
    X, y, X_test, y_test = _check_run(model, params0, X, y, X_test, y_test, epochs, batch_size)
    options = dict(options or {})
    if "maxiter" in options:
        raise ValueError("train_minimize sets maxiter from epochs; do not pass it in options")
    batches = minibatches(X, y, batch_size=batch_size, seed=seed)
    steps_per_epoch = batches.batches_per_epoch
    options = {"parallel": False, **options, "maxiter": epochs * steps_per_epoch}
    bar = _progress_bar(epochs * steps_per_epoch, progress, str(method))
    recorder = _EpochRecorder(model, X_test, y_test, steps_per_epoch, bar)
    # Two gradient buffers, alternately: minimize keeps the previous step's gradient (returned
    # as jac if the next one is not finite), so a call must not overwrite the one before it.
    gradients = [np.empty_like(params0), np.empty_like(params0)]

    def objective(params, Xb, yb):
        gradients.reverse()
        f, g = model.loss_and_grad(params, Xb, yb, out=gradients[0])
        recorder.loss(f)
        return f, g

    def callback(xk):
        recorder.stepped(xk)

    try:
        result = minimize(objective, params0, args=batches, method=method, jac=True,
                          callback=callback, options=options)
        if result.status == 3:  # stopped mid-epoch on a non-finite value: record that epoch
            recorder.close_unfinished(result.x)
    finally:
        if bar is not None:
            bar.close()
    return result, recorder.history
