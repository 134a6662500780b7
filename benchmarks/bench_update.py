"""Benchmark: one update step of every rule over 10^7 float32 parameters.

For each rule it times adamnb's kernel (serial and parallel), a NumPy implementation of the same
rule (with the temporaries NumPy needs), and a plain streaming kernel that moves the same bytes
(reads x, g and the state vectors, writes x and the state vectors: 28 bytes per parameter for
Adam), threaded and serial: each kernel is compared with the streaming kernel of its kind. A
rule that sums over the vector inside its step (LAMB, Prodigy, Adafactor) makes two passes over
it, and is compared with two streaming passes. Where PyTorch is installed it also times ``torch.optim.Adam(fused=True)`` on the same arrays
(shared memory, no copies). Every number is the median of repeated steps, with all contenders
interleaved round by round in one process, so the ratios compare like with like on a noisy machine.

Run: ``python benchmarks/bench_update.py [--n 10000000] [--repeats 15] [--json out.json]``
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
from adamnb.optim import rules
from adamnb.optim.optimizers import OPTIMIZERS


def _streaming_kernel(parallel):
    loop = numba.prange if parallel else range

    @numba.njit(parallel=parallel, cache=True)
    def kernel(x, g, s0, s1, s2, s3, rows):
        # The row tests are loop-invariant; LLVM hoists them and vectorises each variant.
        for i in loop(x.size):
            gi = g[i]
            if rows >= 1:
                s0[i] = s0[i] + gi
            if rows >= 2:
                s1[i] = s1[i] + gi
            if rows >= 3:
                s2[i] = s2[i] + gi
            if rows >= 4:
                s3[i] = s3[i] + gi
            x[i] = x[i] + gi

    return kernel


_STREAMING = {parallel: _streaming_kernel(parallel) for parallel in (False, True)}


def streaming(x, g, state, parallel=True):
    """Move the bytes of an update with trivial arithmetic: the memory-bandwidth yardstick.

    Reads x, g and each state vector and writes x and each state vector, as the update does;
    threaded (``parallel``) or serial, the yardstick of the threaded or serial kernel.
    """
    rows = state.shape[0]
    if rows > 4:
        raise ValueError(f"the streaming kernel moves at most 4 state vectors, not {rows}")
    vectors = [state[k] if k < rows else x[:0] for k in range(4)]
    _STREAMING[parallel](x, g, *vectors, rows)


def numpy_adam(x, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam in NumPy, in place where NumPy allows (torch's formula)."""
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    denominator = np.sqrt(v) / np.float32(np.sqrt(1 - beta2 ** t))
    denominator += np.float32(eps)
    x -= np.float32(lr / (1 - beta1 ** t)) * (m / denominator)


#: The rules with a NumPy step of their shape in the comparison column.
NUMPY_STEPS = ("adam", "adamw", "amsgrad", "nadam", "radam", "adamax", "sgd", "adagrad",
               "rmsprop", "adadelta")


def numpy_step(method, x, g, state, t):
    """A NumPy step for the comparison column; only Adam and SGD-momentum are written out."""
    if method in ("adam", "adamw", "amsgrad", "nadam", "radam", "adamax"):
        numpy_adam(x, g, state[0], state[1], t)
    elif method == "sgd":
        state[0] *= np.float32(0.9)
        state[0] += g
        x -= np.float32(1e-3) * state[0]
    elif method in ("adagrad", "rmsprop", "adadelta"):
        state[0] += g * g
        x -= np.float32(1e-2) * g / (np.sqrt(state[0]) + np.float32(1e-10))


def time_rounds(contenders, repeats):
    """Median seconds per call of each contender, interleaved round by round."""
    samples = {name: [] for name in contenders}
    for name, call in contenders.items():  # warm-up: compile, fault the pages in
        call()
        call()
    for _ in range(repeats):
        for name, call in contenders.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_rule(method, n, repeats, torch):
    rule = rules.get_rule(method)
    options = {"momentum": 0.9} if method == "sgd" else {}
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    serial = OPTIMIZERS.get(method, adamnb.Adam)(parallel=False, **options)
    parallel = OPTIMIZERS.get(method, adamnb.Adam)(parallel=True, **options)
    if method == "amsgrad":
        serial, parallel = adamnb.Adam(amsgrad=True, parallel=False), \
            adamnb.Adam(amsgrad=True, parallel=True)
    rows = rule.rows(serial.options)
    yardstick_state = np.zeros((rows, n), np.float32)
    numpy_state = np.zeros((max(rows, 2), n), np.float32)
    # A rule with sums inside its step (LAMB, Prodigy, Adafactor) reads the vectors twice: one
    # pass for the sums, one for the update. Its yardstick is two streaming passes.
    passes = 2 if rule.reductions else 1
    contenders = {
        "adamnb parallel": lambda: parallel.step(x, g),
        "adamnb serial": lambda: serial.step(x, g),
        "streaming (same bytes)":
            lambda: [streaming(x, g, yardstick_state) for _ in range(passes)],
        "serial streaming (same bytes)":
            lambda: [streaming(x, g, yardstick_state, False) for _ in range(passes)],
    }
    if method in NUMPY_STEPS:
        contenders["NumPy"] = lambda: numpy_step(method, x, g, numpy_state, 10)
    if torch is not None and method == "adam":
        xt, gt = torch.from_numpy(x), torch.from_numpy(g)  # shared memory, no copies
        xt.grad = gt
        fused = torch.optim.Adam([xt], lr=1e-3, fused=True)
        contenders["torch.optim.Adam(fused=True)"] = fused.step
    medians = time_rounds(contenders, repeats)
    bytes_per_parameter = passes * 4 * (3 + 2 * rows)
    return {"method": method, "bytes_per_parameter": bytes_per_parameter,
            "ns_per_parameter": {k: v / n * 1e9 for k, v in medians.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="parameters (default 1e7)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (median)")
    # Muon updates matrices only (2-D group views): no vector update to time here.
    parser.add_argument("--methods", nargs="*", default=[m for m in adamnb.METHODS
                                                         if m in rules.VECTOR_RULES])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(os.cpu_count())
    except ImportError:
        torch = None
        print("PyTorch is not installed: the torch column is skipped.", file=sys.stderr)

    results = [bench_rule(method, args.n, args.repeats, torch) for method in args.methods]
    print(f"# one update step over {args.n:.0e} float32 parameters, median of {args.repeats}")
    print(f"# machine: {machine()}")
    if torch is not None:
        print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = ("method", "B/param", "adamnb par", "streaming par", "par vs streaming",
              "adamnb ser", "streaming ser", "ser vs streaming", "NumPy", "torch fused",
              "par vs NumPy", "par vs torch")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        ns = r["ns_per_parameter"]
        ours, serial = ns["adamnb parallel"], ns["adamnb serial"]
        torch_ns = ns.get("torch.optim.Adam(fused=True)")
        row = [r["method"], str(r["bytes_per_parameter"]), f"{ours:.3f}",
               f"{ns['streaming (same bytes)']:.3f}",
               f"{ns['streaming (same bytes)'] / ours:.0%}", f"{serial:.3f}",
               f"{ns['serial streaming (same bytes)']:.3f}",
               f"{ns['serial streaming (same bytes)'] / serial:.0%}",
               f"{ns['NumPy']:.3f}" if "NumPy" in ns else "-",
               f"{torch_ns:.3f}" if torch_ns else "-",
               f"{ns['NumPy'] / ours:.1f}x faster" if "NumPy" in ns else "-",
               f"{ours / torch_ns:.2f}x its time" if torch_ns else "-"]
        print("| " + " | ".join(row) + " |")
    if args.json:
        write_json(args.json, {"n": args.n, "repeats": args.repeats, "machine": machine(),
                               "results": results})


if __name__ == "__main__":
    main()
