"""The training-epoch loops timed by ``bench_mlp.py`` and ``bench_cnn.py`` (one copy for both).

Each function trains one epoch in minibatches of ``batch`` rows, in a fresh random order, and
returns the seconds it took; evaluation is not timed.
"""

import time

import numpy as np


def adamnb_epoch(model, params, optimizer, X, y, rng, batch):
    """One epoch of ``adamnb.nn.train``'s loop, inlined: loss and gradient, then the update."""
    gradient = np.empty_like(params)
    order = rng.permutation(len(y))
    started = time.perf_counter()
    for start in range(0, len(y), batch):
        rows = order[start:start + batch]
        model.loss_and_grad(params, X[rows], y[rows], out=gradient)
        optimizer.step(params, gradient)
    return time.perf_counter() - started


def torch_epoch(torch, network, optimizer, X, y, batch):
    """One epoch of the usual PyTorch loop with ``CrossEntropyLoss``."""
    loss_function = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(y))
    started = time.perf_counter()
    for start in range(0, len(y), batch):
        rows = order[start:start + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(X[rows]), y[rows])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def interleaved(contenders, repeats):
    """``{label: [seconds per round]}``: a warm-up call of each contender (compilation,
    first-touch allocations), then ``repeats`` rounds that call each contender once, in turn, so
    that a shared machine's load falls on all of them alike."""
    for run in contenders.values():
        run()
    times = {label: [] for label in contenders}
    for _ in range(repeats):
        for label, run in contenders.items():
            times[label].append(run())
    return times
