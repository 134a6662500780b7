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
``python benchmarks/bench_cnn.py [--repeats 5] [--threads N] [--synthetic] [--rows N]
[--json FILE]``.

``--kernels`` instead times the convolution layer's two passes for one batch of 64 against the
alternatives (``adamnb.nn.layers`` explains the choice): the forward pass as the direct fused
kernel of ``adamnb.nn.layers`` against im2col + GEMM (numba im2col, the BLAS product, then one
pass of bias, ReLU, max pooling and dropout), and the backward pass (kernel and bias gradients)
as routed planes + one GEMM against a direct kernel that accumulates into the kernel gradient.
Each contender runs ``--calls`` times per round, rounds interleaved; medians of the rounds.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def _threads_before_numpy(argv):
    """``--threads N`` must reach the BLAS libraries before they start their thread pools, i.e.
    before NumPy and torch are imported: set their environment variables now."""
    for k, word in enumerate(argv):
        value = word.split("=", 1)[1] if word.startswith("--threads=") else \
            argv[k + 1] if word == "--threads" and k + 1 < len(argv) else None
        if value is not None:
            for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ[variable] = value


if __name__ == "__main__":
    _threads_before_numpy(sys.argv[1:])

import numpy as np

import adamnb
from adamnb.backends.jit import jit
from adamnb.backends.random import stream_key
from adamnb.experiments import machine, write_json
from adamnb.nn import keras_mnist_cnn
from adamnb.nn.layers import CPU_OPS, dropout_value, pool_max

from epochs import adamnb_epoch, against_torch, report  # benchmarks/epochs.py

BATCH, LR, EPS = 64, 1e-3, 1e-7


def torch_setup(torch, fused):
    torch.manual_seed(0)
    nn = torch.nn
    network = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                            nn.Flatten(), nn.Linear(13 * 13 * 32, 256), nn.ReLU(), nn.Dropout(0.5),
                            nn.Linear(256, 10))
    network.train()
    optimizer = torch.optim.Adam(network.parameters(), lr=LR, eps=EPS, fused=fused or None)
    return network, optimizer


# --- --kernels: the convolution's alternatives (benchmark only) --------------------------------------

@jit
def _im2col_full(x, patches):
    """Every 3x3 patch of the 1-channel images, one row per output position (n, i, j)."""
    rows, height, width, _ = x.shape
    p = 0
    for n in range(rows):
        for i in range(height - 2):
            for j in range(width - 2):
                t = 0
                for u in range(3):
                    for v in range(3):
                        patches[p, t] = x[n, i + u, j + v, 0]
                        t += 1
                p += 1


@jit
def _bias_relu_pool_dropout(z, b, out, argmax, key, drop, scale):
    """z: the convolution (n, 26, 26, 32) before its bias; out, argmax: (n, 13, 13, 32)."""
    rows, oh, ow, filters = out.shape
    zero, lowest = out.dtype.type(0), out.dtype.type(-np.inf)
    for n in range(rows):
        for pi in range(oh):
            for pj in range(ow):
                cell = (n * oh + pi) * ow + pj
                for f in range(filters):
                    best, arg = lowest, 0
                    for q in range(4):
                        value = z[n, 2 * pi + q // 2, 2 * pj + q % 2, f] + b[f]
                        best, arg = pool_max(value, q, best, arg, True, zero)
                    out[n, pi, pj, f] = dropout_value(best, key, cell * filters + f, drop, scale,
                                                      zero)
                    argmax[n, pi, pj, f] = arg


@jit
def _direct_backward(x, out, argmax, d_out, scale, gw, gb):
    """Kernel and bias gradients accumulated directly, window by window."""
    rows, oh, ow, filters = out.shape
    zero = out.dtype.type(0)
    gw[...] = 0
    gb[...] = 0
    for n in range(rows):
        for pi in range(oh):
            for pj in range(ow):
                for f in range(filters):
                    if out[n, pi, pj, f] > zero:
                        g = d_out[n, pi, pj, f] * scale
                        q = argmax[n, pi, pj, f]
                        i = 2 * pi + q // 2
                        j = 2 * pj + q % 2
                        for u in range(3):
                            for v in range(3):
                                gw[u * 3 + v, f] += x[n, i + u, j + v, 0] * g
                        gb[f] += g


def kernel_benchmark(repeats, calls, threads):
    """Time the convolution's passes for a batch of 64 against their alternatives."""
    rng = np.random.default_rng(0)
    model = keras_mnist_cnn(seed=0)
    params = model.init(0)
    block = model.blocks[0]
    (K, b), _, _ = model.layers(params)
    W = K.reshape(9, 32)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    key, drop, scale = stream_key(0, 1, 1), np.float32(0.25), np.float32(1 / 0.75)
    work = block.buffers(CPU_OPS, BATCH, True)
    grad = np.empty(block.n_params, np.float32)
    d_out = rng.normal(size=(BATCH, 13, 13, 32)).astype(np.float32)
    patches = np.empty((BATCH * 26 * 26, 9), np.float32)
    z = np.empty((BATCH, 26, 26, 32), np.float32)
    out, argmax = np.empty_like(work["out"]), np.empty_like(work["argmax"])
    gw, gb = np.empty((9, 32), np.float32), np.empty(32, np.float32)

    def ours_forward():
        block.forward(CPU_OPS, params[:block.n_params], x, work, True, key)

    def im2col_gemm_forward():
        _im2col_full(x, patches)
        np.matmul(patches, W, out=z.reshape(-1, 32))
        _bias_relu_pool_dropout(z, b, out, argmax, key, drop, scale)

    incoming = np.empty_like(d_out)  # the backward gates its incoming gradient in place

    def ours_backward():
        np.copyto(incoming, d_out)
        block.backward(CPU_OPS, params[:block.n_params], grad, x, work, incoming, None, key)

    def direct_backward():
        np.copyto(incoming, d_out)  # the same copy, so that both times include it
        _direct_backward(x, work["out"], work["argmax"], incoming, scale, gw, gb)

    ours_forward()
    im2col_gemm_forward()
    assert np.array_equal(out == 0, work["out"] == 0)  # the same units pooled, dropped, inactive
    np.testing.assert_allclose(out, work["out"], rtol=1e-5, atol=1e-6)
    ours_backward()
    direct_backward()
    np.testing.assert_allclose(grad[:288].reshape(9, 32), gw, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grad[288:], gb, rtol=1e-3, atol=1e-4)
    contenders = {"forward: direct fused kernel (adamnb)": ours_forward,
                  "forward: im2col + GEMM + pool pass": im2col_gemm_forward,
                  "backward: routed planes + GEMM (adamnb)": ours_backward,
                  "backward: direct accumulation kernel": direct_backward}
    # One thread does all the work: its CPU time is the cost, whatever else loads the machine.
    clock = time.process_time if threads == 1 else time.perf_counter
    times = {label: [] for label in contenders}
    for _ in range(repeats):
        for label, run in contenders.items():
            started = clock()
            for _ in range(calls):
                run()
            times[label].append((clock() - started) / calls * 1e3)
    print(f"Conv2D(32, 3x3) + ReLU + MaxPool 2x2 + Dropout 0.25 on a batch of {BATCH} 28x28x1 "
          f"images; ms per call ({'CPU' if threads == 1 else 'wall'} time), median of {repeats} "
          f"interleaved rounds of {calls} calls; BLAS threads: {threads}; {machine()}")
    for label, values in times.items():
        print(f"  {label:42s} {statistics.median(values):7.3f} ms   (rounds: "
              f"{', '.join(f'{t:.3f}' for t in values)})")
    return {label: statistics.median(values) for label, values in times.items()}, times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after a warm-up)")
    parser.add_argument("--synthetic", action="store_true",
                        help="random images instead of MNIST (same shapes)")
    parser.add_argument("--rows", type=int, default=60000,
                        help="train on the first ROWS images only (a partial epoch, for a quick "
                             "check; the figures are then not one epoch)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--kernels", action="store_true",
                        help="time the convolution's passes against their alternatives instead")
    parser.add_argument("--calls", type=int, default=20, help="calls per round with --kernels")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of both sides' BLAS and of torch (default: the cores "
                             "available); 1 makes the timings robust on a loaded machine")
    args = parser.parse_args(argv)
    threads = args.threads or len(os.sched_getaffinity(0))
    if args.kernels:
        medians, times = kernel_benchmark(args.repeats, args.calls, threads)
        if args.json is not None:
            write_json(args.json, {"machine": machine(), "batch": BATCH, "calls": args.calls,
                                   "threads": threads, "median_ms": medians, "times_ms": times})
        return 0

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

    model = keras_mnist_cnn(seed=0)
    params = model.init(0)
    optimizer = adamnb.Adam(lr=LR, eps=EPS, backend="cpu")
    rng = np.random.default_rng(1)
    times, torch = against_torch(
        lambda: adamnb_epoch(model, params, optimizer, X, y, rng, BATCH), torch_setup,
        X.transpose(0, 3, 1, 2), y, BATCH, threads, args.repeats)  # NCHW for PyTorch
    steps = -(-len(y) // BATCH)
    figures = report(times, torch,
                     f"One epoch ({steps} steps), Keras MNIST CNN, batch {BATCH}, Adam; {data}; "
                     f"median of {args.repeats} interleaved rounds; BLAS and torch threads: "
                     f"{threads}; {machine()}",
                     {"machine": machine(), "data": data, "steps": steps,
                      "repeats": args.repeats, "threads": threads})
    if args.json is not None:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
