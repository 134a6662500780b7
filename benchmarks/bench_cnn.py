"""Benchmark: one training epoch of the Keras MNIST article's CNN, adamnb against PyTorch (CPU).

Both sides train the same network on the same data in this one process: MNIST's 60,000 training
images (or random images of the same shape with ``--synthetic``), minibatches of 64 in a fresh
random order per epoch, Adam at lr 1e-3 (eps 1e-7, Keras's default, on both sides):

    Conv2D 32 filters 3x3, ReLU, on 28x28x1 -> MaxPooling 2x2 -> Dropout 0.25 -> Flatten
    -> Dense 256, ReLU -> Dropout 0.5 -> Dense 10, softmax cross-entropy (1,387,594 parameters)

* adamnb: ``adamnb.nn.keras_mnist_cnn`` + ``adamnb.Adam(backend="cpu")`` in the explicit loop of
  ``adamnb.nn.training.train`` (the loop is inlined here so that evaluation is not timed);
* PyTorch (benchmark only): ``nn.Sequential(Conv2d, ReLU, MaxPool2d, Dropout, Flatten, Linear,
  ReLU, Dropout, Linear)``, ``CrossEntropyLoss``, ``torch.optim.Adam`` both in its default
  (foreach) implementation and with ``fused=True``, ``torch.set_num_threads`` equal to the cores
  available.

The contenders are interleaved: each round times one epoch of each, in turn, so that the load of
a shared machine falls on all of them alike; the medians over the rounds are reported, with the
ratio adamnb / fastest PyTorch variant, and the ratio of each round (adamnb's epoch over the
fastest PyTorch epoch of the same round). Run:
``python benchmarks/bench_cnn.py [--repeats 5] [--synthetic] [--rows N] [--json FILE]``.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import adamnb
from adamnb.experiments import machine, write_json
from adamnb.nn import keras_mnist_cnn

BATCH, LR, EPS = 64, 1e-3, 1e-7


def adamnb_epoch(model, params, optimizer, X, y, rng):
    gradient = np.empty_like(params)
    order = rng.permutation(len(y))
    started = time.perf_counter()
    for start in range(0, len(y), BATCH):
        rows = order[start:start + BATCH]
        model.loss_and_grad(params, X[rows], y[rows], out=gradient)
        optimizer.step(params, gradient)
    return time.perf_counter() - started


def torch_setup(torch, fused):
    torch.manual_seed(0)
    nn = torch.nn
    network = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                            nn.Flatten(), nn.Linear(13 * 13 * 32, 256), nn.ReLU(), nn.Dropout(0.5),
                            nn.Linear(256, 10))
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=LR, eps=EPS, fused=fused or None)
    return network, optimizer


def torch_epoch(torch, network, optimizer, X, y):
    loss_function = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(y))
    started = time.perf_counter()
    for start in range(0, len(y), BATCH):
        rows = order[start:start + BATCH]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(network(X[rows]), y[rows])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after a warm-up)")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images instead of MNIST (same shapes)")
    parser.add_argument("--rows", type=int, default=60000,
                        help="train on the first ROWS images only (a partial epoch, for a quick "
                             "check; the figures are then not one epoch)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    if args.synthetic:
        rng = np.random.default_rng(0)
        X = rng.random((args.rows, 784), dtype=np.float32)
        y = rng.integers(0, 10, args.rows)
        data = f"random images, {args.rows} x 28 x 28"
    else:
        from adamnb.nn.datasets import load_mnist
        X, y = load_mnist()[:2]
        X, y = X[:args.rows], y[:args.rows]
        data = f"MNIST training set, {len(y)} x 28 x 28"
    X = np.ascontiguousarray(X.reshape(-1, 28, 28, 1))

    cores = len(os.sched_getaffinity(0))
    model = keras_mnist_cnn(seed=0)
    params = model.init(0)
    optimizer = adamnb.Adam(lr=LR, eps=EPS, backend="cpu")
    rng = np.random.default_rng(1)
    contenders = {"adamnb": lambda: adamnb_epoch(model, params, optimizer, X, y, rng)}
    try:
        import torch
    except ImportError:
        torch = None
        print("PyTorch is not installed: timing adamnb alone")
    if torch is not None:
        torch.set_num_threads(cores)
        tX = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))  # NCHW
        ty = torch.from_numpy(y.astype(np.int64))
        for label, fused in (("torch Adam (foreach)", False), ("torch Adam (fused)", True)):
            network, torch_optimizer = torch_setup(torch, fused)
            contenders[label] = (lambda n=network, o=torch_optimizer:
                                 torch_epoch(torch, n, o, tX, ty))

    for run in contenders.values():  # warm-up: compilation, first-touch allocations
        run()
    times = {label: [] for label in contenders}
    for _ in range(args.repeats):
        for label, run in contenders.items():
            times[label].append(run())
    medians = {label: statistics.median(t) for label, t in times.items()}
    steps = -(-len(y) // BATCH)
    print(f"One epoch ({steps} steps), Keras MNIST CNN, batch {BATCH}, Adam; {data}; median of "
          f"{args.repeats} interleaved rounds; {machine()}")
    for label, seconds in medians.items():
        print(f"  {label:22s} {seconds:7.2f} s   (rounds: "
              f"{', '.join(f'{t:.2f}' for t in times[label])})")
    figures = {"machine": machine(), "data": data, "steps": steps, "repeats": args.repeats,
               "median_seconds": medians, "times": times}
    if torch is not None:
        fastest = min((label for label in medians if label.startswith("torch")),
                      key=medians.get)
        ratio = medians["adamnb"] / medians[fastest]
        per_round = [times["adamnb"][k] / min(times[label][k] for label in times
                                               if label.startswith("torch"))
                     for k in range(args.repeats)]
        figures.update(ratio_to_fastest_torch=ratio, ratio_per_round=per_round,
                       torch_version=torch.__version__)
        print(f"  adamnb / {fastest}: {ratio:.2f}x the time (median epochs); per round: "
              f"{', '.join(f'{r:.2f}' for r in per_round)}")
    if args.json is not None:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
