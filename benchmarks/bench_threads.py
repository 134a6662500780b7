"""Benchmark: a BLAS-heavy training step with the default optimizer, and the threads' interplay.

A user's training loop written with NumPy: a two-layer MLP (784-1200-10, ReLU, softmax
cross-entropy, about 0.96 million float32 parameters in one flat vector) on batches of 512 random
inputs, forward and backward with NumPy's matrix products (its BLAS, multi-threaded), then one
update of an adamnb optimizer. The update itself takes well under a millisecond; the products
take most of the step. What is measured is whether the optimizer's threads get in the way of the
BLAS threads of the next product: numba's OpenMP worker threads keep spinning for a while after a
threaded kernel returns, and on a machine with few cores they take the cores the BLAS threads
need.

Contenders, interleaved round by round in one process (median seconds per step):

* ``Adam()`` -- the optimizer as users create it (``backend=None``: adamnb decides);
* ``Adam(backend="parallel")`` -- the threaded kernel, forced;
* ``Adam(backend="cpu")`` -- the serial kernel, forced;
* no update at all -- the products alone, the floor.

Run: ``python benchmarks/bench_threads.py [--steps 20] [--repeats 15] [--json out.json]``
"""

import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np

import adamnb
from adamnb.experiments import machine, write_json

SIZES = (784, 1200, 10)


def make_model(batch, seed=0):
    """Flat float32 parameters of the MLP, one training batch, and its loss-and-gradient step."""
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = SIZES
    shapes = [(n_in, n_hidden), (n_hidden,), (n_hidden, n_out), (n_out,)]
    sizes = [int(np.prod(shape)) for shape in shapes]
    params = (rng.standard_normal(sum(sizes)) * 0.01).astype(np.float32)
    grad = np.empty_like(params)
    X = rng.standard_normal((batch, n_in)).astype(np.float32)
    y = rng.integers(0, n_out, batch)

    def views(flat):
        out, start = [], 0
        for shape, size in zip(shapes, sizes):
            out.append(flat[start:start + size].reshape(shape))
            start += size
        return out

    W1, b1, W2, b2 = views(params)
    gW1, gb1, gW2, gb2 = views(grad)
    hidden = np.empty((batch, n_hidden), np.float32)
    logits = np.empty((batch, n_out), np.float32)

    def loss_and_grad():
        np.matmul(X, W1, out=hidden)
        np.add(hidden, b1, out=hidden)
        np.maximum(hidden, 0, out=hidden)
        np.matmul(hidden, W2, out=logits)
        np.add(logits, b2, out=logits)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        loss = -np.log(probabilities[np.arange(batch), y]).mean()
        delta = probabilities
        delta[np.arange(batch), y] -= 1
        delta /= batch
        np.matmul(hidden.T, delta, out=gW2)
        gb2[:] = delta.sum(axis=0)
        back = delta @ W2.T
        back *= hidden > 0
        np.matmul(X.T, back, out=gW1)
        gb1[:] = back.sum(axis=0)
        return loss

    return params, grad, loss_and_grad


def training_loop(optimizer, steps, batch):
    """A function running ``steps`` training steps with ``optimizer`` (None: no update)."""
    params, grad, loss_and_grad = make_model(batch)

    def run():
        for _ in range(steps):
            loss_and_grad()
            if optimizer is not None:
                optimizer.step(params, grad)

    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (median)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    n_params = make_model(1)[0].size
    contenders = {
        "Adam() (the default)": training_loop(adamnb.Adam(lr=1e-3), args.steps, args.batch),
        'Adam(backend="parallel")': training_loop(adamnb.Adam(lr=1e-3, backend="parallel"),
                                                  args.steps, args.batch),
        'Adam(backend="cpu")': training_loop(adamnb.Adam(lr=1e-3, backend="cpu"),
                                             args.steps, args.batch),
        "no update (products only)": training_loop(None, args.steps, args.batch),
    }
    samples = {name: [] for name in contenders}
    for run in contenders.values():  # compile, fault the pages in
        run()
    for _ in range(args.repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - start) / args.steps)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    layer = numba.threading_layer()
    print(f"# {n_params} float32 parameters, batches of {args.batch}, {args.steps} steps per "
          f"round, median of {args.repeats} rounds")
    print(f"# machine: {machine()}; numba threading layer {layer}, {numba.get_num_threads()} "
          f"threads; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    print("| contender | ms per step | vs products only |")
    print("|---|---|---|")
    floor = medians["no update (products only)"]
    for name, seconds in medians.items():
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / floor:.2f}x |")
    if args.json:
        write_json(args.json, {"machine": machine(), "threading_layer": layer,
                               "n_params": n_params, "seconds_per_step": medians})


if __name__ == "__main__":
    sys.exit(main())
