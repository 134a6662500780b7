"""The training-epoch loops timed by ``bench_mlp.py`` and ``bench_cnn.py`` (one copy for both).

Each function trains one epoch in minibatches of ``batch`` rows, in a fresh random order, and
returns the seconds it took; evaluation is not timed.
"""

import statistics
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


def against_torch(adamnb_run, torch_setup, X, y, batch, threads, repeats):
    """Time ``adamnb_run()`` (one adamnb epoch) against PyTorch's Adam, foreach and fused.

    ``torch_setup(torch, fused)`` builds ``(network, optimizer)``; ``X`` (laid out for the
    network) and ``y`` are NumPy arrays. Returns ``(times, torch)``, ``torch`` None (and adamnb
    timed alone) when PyTorch is not installed.
    """
    contenders = {"adamnb": adamnb_run}
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: timing adamnb alone")
    if torch is not None:
        torch.set_num_threads(threads)
        tX, ty = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(y.astype(np.int64))
        for label, fused in (("torch Adam (foreach)", False), ("torch Adam (fused)", True)):
            network, optimizer = torch_setup(torch, fused)
            contenders[label] = (lambda n=network, o=optimizer:
                                 torch_epoch(torch, n, o, tX, ty, batch))
    return interleaved(contenders, repeats), torch


def report(times, torch, header, figures):
    """Print the medians, each round and the ratios to the fastest PyTorch variant; return
    ``figures`` completed with them (for the JSON file)."""
    medians = {label: statistics.median(t) for label, t in times.items()}
    print(header)
    for label, seconds in medians.items():
        print(f"  {label:22s} {seconds:7.2f} s   (rounds: "
              f"{', '.join(f'{t:.2f}' for t in times[label])})")
    figures = {**figures, "median_seconds": medians, "times": times}
    if torch is not None:
        torch_labels = [label for label in medians if label.startswith("torch")]
        fastest = min(torch_labels, key=medians.get)
        ratio = medians["adamnb"] / medians[fastest]
        per_round = [adamnb / min(times[label][k] for label in torch_labels)
                     for k, adamnb in enumerate(times["adamnb"])]
        figures.update(ratio_to_fastest_torch=ratio, ratio_per_round=per_round,
                       torch_version=torch.__version__)
        print(f"  adamnb / {fastest}: {ratio:.2f}x the time (medians); per round: "
              f"{', '.join(f'{r:.2f}' for r in per_round)}")
    return figures
