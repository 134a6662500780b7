"""Benchmark: whole optimization loops on a small problem, where the loop is the cost.

20,000 Adam steps (lr 0.01) on 2-D Rosenbrock from (-1.5, 2), timed as:

* adamnb's compiled path (``minimize`` with the jitted ``value_and_grad`` of
  :mod:`adamnb.functions`: the whole loop in machine code);
* adamnb's Python path (the same functions behind plain Python wrappers, so the driver loops in
  Python and calls a fused compiled step);
* the driver's own overhead per step on the Python path, with a trivial objective;
* a plain NumPy loop (Adam written out, gradient in NumPy);
* where installed (benchmark only): PyTorch's ``torch.optim.Adam`` loop with autograd, and optax's
  ``adam`` inside ``jax.lax.scan`` under ``jax.jit`` (compiled once before timing);
* 10^4 starts of the same problem: ``minimize_batch`` against 10^4 sequential compiled runs.

All contenders run in this one process, interleaved, median of repeats. Run:
``python experiments/bench_loops.py [--steps 20000] [--repeats 7] [--starts 10000]``
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

import adamnb
from adamnb.functions import get

sys.path.insert(0, os.path.dirname(__file__))
from bench_update import machine  # noqa: E402

START = np.array([-1.5, 2.0])
LR = 0.01


def numpy_loop(steps):
    x = START.copy()
    m = np.zeros(2)
    v = np.zeros(2)
    for t in range(1, steps + 1):
        g = np.array([-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]),
                      200.0 * (x[1] - x[0] ** 2)])
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - LR / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    return x


def torch_loop(torch, steps):
    x = torch.tensor(START, requires_grad=True)
    opt = torch.optim.Adam([x], lr=LR)
    for _ in range(steps):
        opt.zero_grad()
        loss = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
        loss.backward()
        opt.step()
    return x.detach().numpy()


def make_optax_loop(steps):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    optimizer = optax.adam(LR)

    def loss(x):
        return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2

    @jax.jit
    def run(x):
        def body(carry, _):
            x, state = carry
            g = jax.grad(loss)(x)
            updates, state = optimizer.update(g, state, x)
            return (optax.apply_updates(x, updates), state), None

        (x, _), _ = jax.lax.scan(body, (x, optimizer.init(x)), None, length=steps)
        return x

    x0 = jnp.asarray(START)
    run(x0).block_until_ready()  # compile outside the timing
    return lambda: np.asarray(run(x0).block_until_ready()), jax.__version__


def median_seconds(call, repeats):
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--starts", type=int, default=10_000)
    parser.add_argument("--batch-steps", type=int, default=2_000,
                        help="steps per start in the batched comparison")
    args = parser.parse_args(argv)
    steps = args.steps
    rosenbrock = get("rosenbrock")
    options = {"lr": LR, "maxiter": steps, "gtol": 0}
    value_and_grad = rosenbrock.value_and_grad

    def compiled():
        return adamnb.minimize(value_and_grad, START, jac=True, options=options).x

    def python_path():
        return adamnb.minimize(lambda x: value_and_grad(x), START, jac=True, options=options).x

    assert compiled().tobytes() == python_path().tobytes()  # same arithmetic, same bits

    zero = np.zeros(2)

    def trivial():
        adamnb.minimize(lambda x: 0.0, START, jac=lambda x: zero, options=options)

    def trivial_user_calls():
        f, g = (lambda x: 0.0), (lambda x: zero)
        for _ in range(steps + 1):
            f(zero)
            g(zero)

    contenders = {"adamnb compiled path": compiled, "adamnb Python path": python_path,
                  "NumPy loop": lambda: numpy_loop(steps)}
    notes = []
    try:
        import torch
        torch.set_num_threads(1)
        contenders["torch.optim.Adam loop"] = lambda: torch_loop(torch, steps)
        notes.append(f"torch {torch.__version__} (1 thread)")
    except ImportError:
        print("PyTorch not installed: skipped", file=sys.stderr)
    try:
        optax_run, jax_version = make_optax_loop(steps)
        contenders["optax adam in jax.lax.scan (jit)"] = optax_run
        notes.append(f"jax {jax_version}, x64")
    except ImportError:
        print("JAX/optax not installed: skipped", file=sys.stderr)

    seconds = {name: median_seconds(call, args.repeats) for name, call in contenders.items()}
    overhead = (median_seconds(trivial, args.repeats)
                - median_seconds(trivial_user_calls, args.repeats)) / steps

    print(f"# {steps} Adam steps on 2-D Rosenbrock from (-1.5, 2), median of {args.repeats}")
    print(f"# machine: {machine()}; {', '.join(notes)}")
    base = seconds["adamnb compiled path"]
    print("| loop | us per step | time vs compiled path |")
    print("|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value / steps * 1e6:.3f} | {value / base:.1f}x |")
    print(f"| adamnb Python path: driver overhead (trivial objective) | {overhead * 1e6:.3f} | - |")

    rng = np.random.default_rng(0)
    starts = START + rng.normal(scale=0.1, size=(args.starts, 2))
    batch_options = {"lr": LR, "maxiter": args.batch_steps, "gtol": 0}
    adamnb.minimize_batch(value_and_grad, starts[:4], jac=True, options=batch_options)

    def batched():
        return adamnb.minimize_batch(value_and_grad, starts, jac=True, options=batch_options)

    def sequential():
        return [adamnb.minimize(value_and_grad, s, jac=True, options=batch_options)
                for s in starts]

    batch_repeats = max(3, args.repeats // 2)
    batch_seconds = median_seconds(batched, batch_repeats)
    sequential_seconds = median_seconds(sequential, batch_repeats)
    result, reference = batched(), sequential()
    identical = all(result.x[j].tobytes() == reference[j].x.tobytes() for j in range(len(starts)))
    print(f"\n# {args.starts} starts x {args.batch_steps} steps, median of {batch_repeats}")
    print("| run | seconds | speed-up |")
    print("|---|---|---|")
    print(f"| {args.starts} sequential compiled runs | {sequential_seconds:.3f} | 1.0x |")
    print(f"| minimize_batch ({os.cpu_count()} cores) | {batch_seconds:.3f} | "
          f"{sequential_seconds / batch_seconds:.1f}x |")
    print(f"# every batched start equals its single-start run bit for bit: {identical}")


if __name__ == "__main__":
    main()
