"""Benchmark: one training epoch of the 784-1000-1000-10 dropout MLP, adamnb against PyTorch (CPU).

Both sides train the same network on the same data in this one process: MNIST's 60,000 training
images (or random images of the same shape with ``--synthetic``), minibatches of 128 in a fresh
random order per epoch, ReLU, dropout 0.5 after each hidden layer, softmax cross-entropy, Adam at
lr 1e-3:

* adamnb: ``adamnb.nn.MLP`` + ``adamnb.Adam(backend="cpu")`` in the explicit loop of
  ``adamnb.nn.training.train`` (the loop is inlined here so that evaluation is not timed);
* PyTorch (benchmark only): ``nn.Sequential(Linear, ReLU, Dropout, Linear, ReLU, Dropout,
  Linear)``, ``CrossEntropyLoss``, ``torch.optim.Adam``, both its default (foreach) implementation
  and ``fused=True``, with ``torch.set_num_threads`` equal to the cores available.

Each repeat times one epoch of each contender, in turn; the medians over the repeats are reported,
with the ratio adamnb / fastest PyTorch variant. Run:
``python benchmarks/bench_mlp.py [--repeats 5] [--synthetic] [--json FILE]``.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

import adamnb
from adamnb.experiments import machine, write_json
from adamnb.nn import MLP

from epochs import adamnb_epoch, against_torch, report  # benchmarks/epochs.py

SIZES, DROPOUT, BATCH, LR = (784, 1000, 1000, 10), 0.5, 128, 1e-3


def torch_setup(torch, fused):
    torch.manual_seed(0)
    layers = []
    for k, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if k < len(SIZES) - 2:
            layers += [torch.nn.ReLU(), torch.nn.Dropout(DROPOUT)]
    network = torch.nn.Sequential(*layers)
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=LR, fused=fused or None)
    return network, optimizer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--synthetic", action="store_true",
                        help="random images instead of MNIST (same shapes)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    if args.synthetic:
        rng = np.random.default_rng(0)
        X = rng.random((60000, 784), dtype=np.float32)
        y = rng.integers(0, 10, 60000)
        data = "random images, 60000 x 784"
    else:
        from adamnb.nn.datasets import load_mnist
        X, y = load_mnist()[:2]
        data = "MNIST training set, 60000 x 784"

    cores = len(os.sched_getaffinity(0))
    model = MLP(SIZES, dropout=DROPOUT, seed=0)
    params = model.init(0)
    optimizer = adamnb.Adam(lr=LR, backend="cpu")
    rng = np.random.default_rng(1)
    times, torch = against_torch(
        lambda: adamnb_epoch(model, params, optimizer, X, y, rng, BATCH), torch_setup, X, y,
        BATCH, cores, args.repeats)
    figures = report(times, torch,
                     f"One epoch, MLP {'-'.join(map(str, SIZES))}, dropout {DROPOUT}, batch "
                     f"{BATCH}, Adam; {data}; median of {args.repeats} interleaved rounds; "
                     f"{machine()}",
                     {"machine": machine(), "data": data, "repeats": args.repeats})
    if args.json is not None:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
