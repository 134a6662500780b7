"""Benchmark: whole optimization loops on a small problem, where the loop is the cost.

20,000 Adam steps (lr 0.01) on 2-D Rosenbrock from (-1.5, 2), timed as:

* adamnb's compiled path (``minimize`` with ``compiled=True``) on the jitted ``value_and_grad``
  of :mod:`adamnb.problems.functions` (allocation-free ``into`` protocol), and on a user's own
  jitted Rosenbrock written as users write it (it returns a new gradient array per call), each in
  the default exact mode and in the fast mode (``fast=True``), and on the user's Rosenbrock
  written with an ``into`` (minimize's Notes);
* adamnb's Python path (the same functions behind plain Python wrappers, so the driver loops in
  Python and calls a fused compiled step), and the driver's own overhead per step on it, with a
  trivial objective;
* a plain NumPy loop (Adam written out, gradient in NumPy);
* where installed (benchmark only): PyTorch's ``torch.optim.Adam`` loop with autograd, and optax's
  ``adam`` inside ``jax.lax.scan`` under ``jax.jit`` (compiled once before timing);
* 10^4 starts x 2,000 steps of the same problem: ``minimize_batch`` against optax's ``adam``
  under ``jax.vmap`` of the same ``lax.scan`` under ``jax.jit``, with a check that every batched
  start equals its own single-start run, bit for bit (the built-in problem's and, for the first
  100 starts, the user's ``into``).

Where the compiled path's time goes: its coefficient table alone (``coefficient_columns`` of the
20,000 steps, NumPy on the host, with the powers ``power`` keeps per process: in a run, the
blocks after the first are computed on a second thread while the loop runs the previous one),
its fixed cost per call (``minimize`` of one step), the loop alone (the compiled loop that
``minimize`` runs, called once on a table of all 20,000 steps computed beforehand: the run less
the Python around the loop), and the update's own chain of dependent operations: Adam's element
and Rosenbrock's gradient in a bare numba loop over a precomputed table, with none of the
driver's tests and bookkeeping. That chain (the next x needs the gradient at this x, which needs
this x) is the floor of any loop computing the same arithmetic. Last, what a user's allocating
objective adds at least: numba allocating and freeing a 2-element array, in a loop of its own.

All run in this one process, interleaved round by round within groups, median of repeats: the
runs under 10 ms (compiled paths, optax), the slow loops (Python path, NumPy, torch: a 5 s
torch run between two rounds of a 1 ms run would evict its caches), the compiled path with its
parts, and the batches. Run:
``python benchmarks/bench_loops.py [--steps 20000] [--repeats 7] [--fast-repeats 31]
[--starts 10000] [--json FILE]``
"""

import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np

import adamnb
from adamnb.optim import rules
from adamnb.problems.functions import get, rosenbrock_value_and_grad_into

sys.path.insert(0, os.path.dirname(__file__))
from bench_update import time_rounds  # noqa: E402

from adamnb.experiments import machine, write_json  # noqa: E402

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


def _optax_adam_scan(steps):
    import jax
    import optax

    jax.config.update("jax_enable_x64", True)
    optimizer = optax.adam(LR)

    def loss(x):
        return 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2

    def run(x):
        def body(carry, _):
            x, state = carry
            g = jax.grad(loss)(x)
            updates, state = optimizer.update(g, state, x)
            return (optax.apply_updates(x, updates), state), None

        (x, _), _ = jax.lax.scan(body, (x, optimizer.init(x)), None, length=steps)
        return x

    return jax, run


def make_optax_loop(steps):
    """optax's adam for ``steps`` steps in ``lax.scan`` under ``jit``, compiled before timing."""
    jax, run = _optax_adam_scan(steps)
    run = jax.jit(run)
    x0 = jax.numpy.asarray(START)
    run(x0).block_until_ready()  # compile outside the timing
    return lambda: np.asarray(run(x0).block_until_ready()), jax.__version__


def make_optax_batch(starts, steps):
    """The same under ``jax.vmap`` over the rows of ``starts``, compiled before timing."""
    jax, run = _optax_adam_scan(steps)
    batched = jax.jit(jax.vmap(run))
    x0 = jax.numpy.asarray(starts)
    batched(x0).block_until_ready()
    return lambda: np.asarray(batched(x0).block_until_ready())


@numba.njit
def users_rosenbrock(x):
    """A user's own jitted 2-D Rosenbrock, written as users write it: value and a new gradient
    array per call, no ``into``."""
    a = x[1] - x[0] * x[0]
    b = 1.0 - x[0]
    return 100.0 * a * a + b * b, np.array([-400.0 * x[0] * a - 2.0 * b, 200.0 * a])


@numba.njit
def users_rosenbrock_into(x, g_out):
    """The same, written into a given gradient buffer: the ``into`` protocol of
    ``adamnb.minimize``'s docstring, which lets the compiled loops allocate nothing per step."""
    a = x[1] - x[0] * x[0]
    b = 1.0 - x[0]
    g_out[0] = -400.0 * x[0] * a - 2.0 * b
    g_out[1] = 200.0 * a
    return 100.0 * a * a + b * b


@numba.njit
def users_rosenbrock_with_into(x):
    g = np.empty_like(x)
    return users_rosenbrock_into(x, g), g


users_rosenbrock_with_into.into = users_rosenbrock_into


def make_parts(steps):
    """Parts of the compiled path, to time alone: the update's dependency chain (Adam's element
    and Rosenbrock's gradient, nothing else, over a precomputed coefficient table: the same
    arithmetic as the compiled path), the computation of that table, the compiled loop that
    ``minimize`` runs, called once on that table (no Python between blocks), and ``steps``
    allocations of a 2-element array."""
    from adamnb.optimize import _compiled

    adam = rules.get_rule("adam")
    element = adam.element
    count = adam.n_coefficients

    # The step's scalars read one by one, without numba's reference counting (as the compiled
    # loop reads them): a view of the table's column would cost a reference count per step.
    read = _compiled.coefficient_reader((None,) * count)

    @numba.njit(error_model="numpy", _nrt=False)
    def chain(x, g, state, table):
        for step in range(table.shape[1]):
            c = read(table, step)
            for i in range(x.size):
                x[i] = element(x[i], g[i], state, i, c)
            rosenbrock_value_and_grad_into(x, g)

    options = adam.validate({"lr": LR})
    t = np.arange(1, steps + 1)
    table, _ = adam.coefficient_columns(options, t, np.full(steps, LR), {})

    def run():
        x = START.copy()
        g = np.empty(2)
        rosenbrock_value_and_grad_into(x, g)
        chain(x, g, np.zeros((2, 2)), table)
        return x

    def coefficient_table():
        adam.coefficient_columns(options, t, np.full(steps, LR), {})

    value_and_grad = get("rosenbrock").value_and_grad

    def loop_arguments():
        x = START.copy()
        g = np.empty(2)
        f = rosenbrock_value_and_grad_into(x, g)
        # (args, x, f, g, spare, point, norm, state, carry, table, previous, lower, upper, gtol,
        # history, vectors, counts): compiled_loop's docstring; gtol 0, so norm is not read
        return ((), x, f, g, np.empty(2), np.empty(2), 1.0, np.zeros((2, 2)),
                adam.carry_vector(options, x.dtype), table, np.empty(2), x[:0], x[:0], 0.0,
                np.empty(0), np.empty((0, 2)), np.zeros(3, dtype=np.int64))

    @numba.njit
    def allocations(count):
        # What a user's allocating objective adds to a step at least: numba allocating a
        # 2-element array and freeing it (the values are used, so that nothing is elided).
        total = 0.0
        for step in range(count):
            gradient = np.empty(2)
            gradient[0] = step
            gradient[1] = total
            total += gradient[0] - gradient[1]
        return total

    # The loop minimize picks for this objective (compile_loop's first candidate that compiles).
    loop = _compiled.compile_loop(adam, value_and_grad, True, False, 0, False, loop_arguments())

    def loop_alone():
        arguments = loop_arguments()
        loop(*arguments)
        return arguments[1]

    return run, coefficient_table, loop_alone, lambda: allocations(steps)


def median_seconds(call, repeats):
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def single_start_loops(args, report):
    steps = args.steps
    rosenbrock = get("rosenbrock")
    options = {"lr": LR, "maxiter": steps, "gtol": 0, "compiled": True}
    value_and_grad = rosenbrock.value_and_grad

    def minimizing(fun, **extra):
        return lambda: adamnb.minimize(fun, START, jac=True, options={**options, **extra}).x

    def python_path():
        return adamnb.minimize(lambda x: value_and_grad(x), START, jac=True,
                               options={**options, "compiled": False}).x

    def users_python_path():
        return adamnb.minimize(lambda x: users_rosenbrock(x), START, jac=True,
                               options={**options, "compiled": False}).x

    def one_step():
        adamnb.minimize(value_and_grad, START, jac=True, options={**options, "maxiter": 1})

    compiled, compiled_fast = minimizing(value_and_grad), minimizing(value_and_grad, fast=True)
    users, users_fast = minimizing(users_rosenbrock), minimizing(users_rosenbrock, fast=True)
    users_into = minimizing(users_rosenbrock_with_into)
    chain_floor, coefficient_table, loop_alone, allocations = make_parts(steps)
    # The exact compiled paths have the host loop's bits (and the bare chain and the loop alone
    # are the same arithmetic); fast mode is other arithmetic, within its stated tolerance.
    assert compiled().tobytes() == python_path().tobytes() == chain_floor().tobytes() \
        == loop_alone().tobytes()
    assert users().tobytes() == users_python_path().tobytes() == users_into().tobytes()
    assert np.allclose(compiled_fast(), compiled(), atol=1e-3)

    zero = np.zeros(2)

    def trivial():
        adamnb.minimize(lambda x: 0.0, START, jac=lambda x: zero,
                        options={**options, "compiled": False})

    def trivial_user_calls():
        f, g = (lambda x: 0.0), (lambda x: zero)
        for _ in range(steps + 1):
            f(zero)
            g(zero)

    fast = {"adamnb compiled, built-in Rosenbrock (into), exact": compiled,
            "adamnb compiled, built-in Rosenbrock (into), fast": compiled_fast,
            "adamnb compiled, a user's allocating Rosenbrock, exact": users,
            "adamnb compiled, a user's allocating Rosenbrock, fast": users_fast,
            "adamnb compiled, a user's Rosenbrock with `into`, exact": users_into}
    slow = {"adamnb Python path": python_path, "NumPy loop": lambda: numpy_loop(steps)}
    notes = []
    try:
        optax_run, jax_version = make_optax_loop(steps)
        fast["optax adam in jax.lax.scan (jit)"] = optax_run
        notes.append(f"jax {jax_version}, x64")
    except ImportError:
        print("JAX/optax not installed: skipped", file=sys.stderr)
    try:
        import torch
        torch.set_num_threads(1)
        slow["torch.optim.Adam loop"] = lambda: torch_loop(torch, steps)
        notes.append(f"torch {torch.__version__} (1 thread)")
    except ImportError:
        print("PyTorch not installed: skipped", file=sys.stderr)

    seconds = time_rounds(fast, args.fast_repeats)
    if not args.skip_slow:
        seconds.update(time_rounds(slow, args.repeats))
    parts = time_rounds({"whole": compiled, "coefficient table": coefficient_table,
                         "one-step minimize": one_step, "loop alone": loop_alone,
                         "chain floor": chain_floor, "allocations": allocations},
                        args.fast_repeats)
    overhead = None
    if not args.skip_slow:
        overhead = (median_seconds(trivial, args.repeats)
                    - median_seconds(trivial_user_calls, args.repeats)) / steps

    print(f"# {steps} Adam steps on 2-D Rosenbrock from (-1.5, 2), median of "
          f"{args.fast_repeats} (runs under 10 ms) or {args.repeats}")
    print(f"# machine: {machine()}; {', '.join(notes)}")
    optax_name = "optax adam in jax.lax.scan (jit)"
    base = seconds.get(optax_name, seconds[next(iter(fast))])
    print(f"| loop | ns per step | time vs {'optax' if optax_name in seconds else 'compiled'} |")
    print("|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value / steps * 1e9:.1f} | {value / base:.2f}x |")
    if overhead is not None:
        print(f"| adamnb Python path: driver overhead (trivial objective) | "
              f"{overhead * 1e9:.0f} | - |")

    whole, table = parts["whole"], parts["coefficient table"]
    fixed = parts["one-step minimize"]  # its one step of work is negligible
    print(f"\n# where the compiled path's {whole / steps * 1e9:.1f} ns per step go "
          "(its parts timed together with it)")
    print("| part | ns per step |")
    print("|---|---|")
    print("| coefficient table (NumPy on the host, computed alone, its 2 powers per step those "
          "kept since an earlier run; in the run all but the first block's are computed on a "
          "second thread while the loop runs) | "
          f"{table / steps * 1e9:.1f} |")
    print(f"| fixed cost per call (a one-step minimize), spread over {steps} steps | "
          f"{fixed / steps * 1e9:.1f} |")
    print(f"| the compiled loop alone (called once on a table computed beforehand) | "
          f"{parts['loop alone'] / steps * 1e9:.1f} |")
    print(f"| the Python around the loop: the run less the loop alone (the fixed cost, the first "
          f"block's scalars, the handoffs between blocks) | "
          f"{(whole - parts['loop alone']) / steps * 1e9:.1f} |")
    print(f"| the update's dependency chain alone (bare loop, same arithmetic) | "
          f"{parts['chain floor'] / steps * 1e9:.1f} |")
    print(f"| numba allocating and freeing a 2-element array (what an allocating objective adds "
          f"to a step, before any overlap with the chain) | "
          f"{parts['allocations'] / steps * 1e9:.1f} |")
    report["single_start"] = {"steps": steps, "seconds": seconds, "parts": parts,
                              "python_driver_overhead_per_step": overhead, "notes": notes}


def batched_starts(args, report):
    rosenbrock = get("rosenbrock")
    rng = np.random.default_rng(0)
    starts = START + rng.normal(scale=0.1, size=(args.starts, 2))
    options = {"lr": LR, "maxiter": args.batch_steps, "gtol": 0}
    adamnb.minimize_batch(rosenbrock.value_and_grad, starts[:4], jac=True, options=options)
    adamnb.minimize_batch(users_rosenbrock, starts[:4], jac=True, options=options)
    adamnb.minimize_batch(users_rosenbrock_with_into, starts[:4], jac=True, options=options)

    contenders = {
        "minimize_batch, built-in Rosenbrock": lambda: adamnb.minimize_batch(
            rosenbrock.value_and_grad, starts, jac=True, options=options).x,
        "minimize_batch, a user's allocating Rosenbrock": lambda: adamnb.minimize_batch(
            users_rosenbrock, starts, jac=True, options=options).x,
        "minimize_batch, a user's Rosenbrock with `into`": lambda: adamnb.minimize_batch(
            users_rosenbrock_with_into, starts, jac=True, options=options).x,
    }
    try:
        contenders["optax adam, jax.vmap of lax.scan (jit)"] = make_optax_batch(
            starts, args.batch_steps)
    except ImportError:
        print("JAX/optax not installed: skipped", file=sys.stderr)
    repeats = max(3, args.repeats)
    seconds = time_rounds(contenders, repeats)
    batch = adamnb.minimize_batch(rosenbrock.value_and_grad, starts, jac=True, options=options)
    identical = all(
        batch.x[j].tobytes() == adamnb.minimize(rosenbrock.value_and_grad, starts[j], jac=True,
                                                options={**options, "compiled": True}).x.tobytes()
        for j in range(len(starts)))
    users_batch = adamnb.minimize_batch(users_rosenbrock_with_into, starts[:100], jac=True,
                                        options=options)
    identical &= all(
        users_batch.x[j].tobytes() == adamnb.minimize(
            users_rosenbrock_with_into, starts[j], jac=True,
            options={**options, "compiled": True}).x.tobytes()
        for j in range(100))
    print(f"\n# {args.starts} starts x {args.batch_steps} steps, median of {repeats}, "
          f"{numba.get_num_threads()} threads")
    jax_name = "optax adam, jax.vmap of lax.scan (jit)"
    print("| run | seconds | time vs optax vmap |")
    print("|---|---|---|")
    for name, value in seconds.items():
        ratio = f"{value / seconds[jax_name]:.2f}x" if jax_name in seconds else "-"
        print(f"| {name} | {value:.3f} | {ratio} |")
    print("# every batched start equals its single-start run bit for bit (all of the built-in "
          f"batch, the first 100 of the user's `into` batch): {identical}")
    report["batch"] = {"starts": args.starts, "steps": args.batch_steps, "seconds": seconds,
                       "identical_to_single_runs": identical}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7,
                        help="rounds for the slow loops (Python path, NumPy, torch) and batches")
    parser.add_argument("--fast-repeats", type=int, default=31,
                        help="rounds for the runs under 10 ms (compiled path, optax, parts)")
    parser.add_argument("--starts", type=int, default=10_000)
    parser.add_argument("--batch-steps", type=int, default=2_000,
                        help="steps per start in the batched comparison")
    parser.add_argument("--skip-slow", action="store_true",
                        help="leave out the Python path, NumPy and torch loops")
    parser.add_argument("--only", choices=("single", "batch"), help="run one part only")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    report = {"machine": machine()}
    if args.only != "batch":
        single_start_loops(args, report)
    if args.only != "single":
        batched_starts(args, report)
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
