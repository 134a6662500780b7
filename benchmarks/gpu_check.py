"""GPU check: the CUDA tests on the device, the update step's bandwidth, and an MNIST epoch.

One command for a machine with an NVIDIA GPU and numba-cuda (``pip install -e ".[cuda]"``)::

    python benchmarks/gpu_check.py            # writes gpu_check.json, in under 8 minutes

It runs, in order, each part on its own (a failing part is recorded and the next one runs):

1. ``tests/test_cuda*.py`` on the real device (pytest in a subprocess without the simulator):
   pass/fail/skip counts and the output's tail;
2. the device's copy bandwidth: a device-to-device copy of ``--size`` float32 values, bytes read
   plus bytes written per second, the yardstick of a memory-bound kernel;
3. one update step of every rule on ``--size`` (default 10^8) float32 parameters
   (``adamnb.<Rule>(backend="cuda")`` on device arrays): median seconds, bytes moved per second
   (x, g and the state read, x and the state written: 28 bytes per parameter for Adam) and that
   as a fraction of the copy bandwidth; and ``torch.optim.Adam(fused=True)`` on the same sizes
   where torch with CUDA is installed, in the same process, interleaved round by round;
4. one Muon step (5 Newton-Schulz iterations) on a ``--side`` x ``--side`` float32 matrix
   (default 1024; one parameter group with that shape) on the device, against the same step on
   the host (NumPy's BLAS) and ``torch.optim.Muon`` on CUDA where torch has it: median seconds,
   and the largest difference between the device's and the host's new iterate;
5. one epoch of the MNIST MLP (784-1000-1000-10, dropout 0.5, Adam, batches of 128) on the
   device (``adamnb.nn.cuda_models.train_cuda``, a first epoch to compile, then a timed one)
   against the same epoch on the CPU (``adamnb.nn.train``, serial Adam). MNIST comes from
   ``adamnb.nn.load_mnist(download=False)`` (``ADAMNB_DATA``); where it is absent, random images
   of the same shape (the epoch's time depends on shapes only; the report says which).

The report (one JSON file, written atomically) holds the machine, the device, each part's figures
or error, and the seconds each part took. ``--tiny`` runs every part on toy sizes for numba's
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), where the timings mean nothing: CI runs it that way
(``tests/test_cuda_gpu_check.py``), so the script is known to work before a GPU is lent.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

#: Parts of the check, in order.
PARTS = ("tests", "copy_bandwidth", "update", "muon", "mnist")


def _cuda():
    from numba import cuda

    return cuda


def _simulator():
    from adamnb.backends import cuda as cuda_backend

    return cuda_backend.simulator_enabled()


def device_info():
    """Name, compute capability, multiprocessors and memory of the current device."""
    cuda = _cuda()
    device = cuda.current_context().device
    info = {"simulator": _simulator(),
            "name": getattr(device, "name", b"?"),
            "compute_capability": list(getattr(device, "compute_capability", ())),
            "multiprocessors": getattr(device, "MULTIPROCESSOR_COUNT", None)}
    if isinstance(info["name"], bytes):
        info["name"] = info["name"].decode()
    try:
        free, total = cuda.current_context().get_memory_info()
        info["memory_bytes"] = int(total)
    except Exception:  # noqa: BLE001 -- the simulator has no memory to report
        info["memory_bytes"] = None
    return info


def median_seconds(call, repeats):
    """Median wall time of ``call()``, the device synchronised after each call."""
    cuda = _cuda()
    call()
    cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_tests(select, timeout):
    """``tests/test_cuda*.py`` in a subprocess: pytest's counts, return code and output's tail.

    On a GPU machine the simulator is switched off for the subprocess; under the simulator (CI)
    it stays on. ``select`` is pytest's ``-k`` expression (None: every test).
    """
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_cuda*.py"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]
    if select:
        command += ["-k", select]
    environment = dict(os.environ)
    if not _simulator():
        environment.pop("NUMBA_ENABLE_CUDASIM", None)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True,
                               text=True, timeout=timeout)
    output = completed.stdout + completed.stderr
    counts = {kind: int(number) for number, kind in
              re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}
    return {"command": " ".join(command), "returncode": completed.returncode, "counts": counts,
            "seconds": time.perf_counter() - started, "output_tail": output[-3000:]}


def copy_bandwidth(size, repeats):
    """Device-to-device copy of ``size`` float32 values: bytes read + written per second."""
    cuda = _cuda()
    source = cuda.to_device(np.ones(size, np.float32))
    target = cuda.device_array(size, np.float32)
    seconds = median_seconds(lambda: target.copy_to_device(source), repeats)
    return {"size": size, "seconds": seconds, "bytes_per_second": 2 * 4 * size / seconds}


def _optimizer(method, backend):
    import adamnb
    from adamnb.optim import OPTIMIZERS, rules

    rule = rules.get_rule(method)
    options = {"momentum": 0.9} if method == "sgd" else {}
    cls = OPTIMIZERS.get(method)
    if cls is None:  # a method that is a configuration of another rule (amsgrad)
        return adamnb.Adam(backend=backend, **rule.fixed, **options), rule
    return cls(backend=backend, **options), rule


def interleaved(contenders, repeats):
    """``{name: [seconds, ...]}``: each of ``contenders`` (name -> call) called once to compile
    and warm up, then ``repeats`` rounds of one call each, in turn, the device synchronised
    after every call (the machine's drift hits every contender alike)."""
    cuda = _cuda()
    samples = {name: [] for name in contenders}
    for call in contenders.values():
        call()
    cuda.synchronize()
    for _ in range(repeats):
        for name, call in contenders.items():
            start = time.perf_counter()
            call()
            cuda.synchronize()
            samples[name].append(time.perf_counter() - start)
    return samples


def update_benchmark(size, repeats, bandwidth):
    """One step of every rule on ``size`` float32 device parameters; torch's fused Adam where
    torch has CUDA. Contenders interleaved round by round."""
    import adamnb

    cuda = _cuda()
    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal(size, dtype=np.float32))
    g = cuda.to_device(rng.standard_normal(size, dtype=np.float32))
    contenders, bytes_moved = {}, {}
    from adamnb.optim import rules

    # Muon updates matrices only: its own part, muon_benchmark
    for method in (m for m in adamnb.METHODS if m in rules.VECTOR_RULES):
        optimizer, rule = _optimizer(method, "cuda")
        contenders[method] = (lambda optimizer=optimizer: optimizer.step(x, g))
        bytes_moved[method] = 4 * size * (3 + 2 * rule.rows(optimizer.options))
    torch_note = None
    try:
        import torch

        if torch.cuda.is_available():
            parameter = torch.randn(size, device="cuda")
            parameter.grad = torch.randn(size, device="cuda")
            fused = torch.optim.Adam([parameter], lr=1e-3, fused=True)
            contenders["torch.optim.Adam(fused=True)"] = lambda: (fused.step(),
                                                                   torch.cuda.synchronize())
            bytes_moved["torch.optim.Adam(fused=True)"] = 4 * size * 7
            torch_note = torch.__version__
        else:
            torch_note = f"torch {torch.__version__} without CUDA: skipped"
    except ImportError:
        torch_note = "torch not installed: skipped"
    samples = interleaved(contenders, repeats)
    results = []
    for name, values in samples.items():
        seconds = statistics.median(values)
        rate = bytes_moved[name] / seconds
        results.append({"contender": name, "seconds": seconds,
                        "bytes_per_parameter": bytes_moved[name] // (4 * size) * 4,
                        "bytes_per_second": rate,
                        "fraction_of_copy_bandwidth": rate / bandwidth if bandwidth else None})
    torch_seconds = statistics.median(samples["torch.optim.Adam(fused=True)"]) \
        if "torch.optim.Adam(fused=True)" in samples else None
    if torch_seconds:
        for result in results:
            result["time_vs_torch_fused_adam"] = result["seconds"] / torch_seconds
    return {"size": size, "repeats": repeats, "torch": torch_note, "results": results}


def muon_benchmark(side, repeats):
    """One Muon step on a ``side`` x ``side`` float32 matrix: device, host, torch's Muon on
    CUDA where available (interleaved round by round), and how far the device's new iterate is
    from the host's."""
    import adamnb

    cuda = _cuda()
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal(side * side, dtype=np.float32)
    g = rng.standard_normal(side * side, dtype=np.float32)
    groups = [{"params": [(0, x0.size, (side, side))]}]
    host_x, device_x = x0.copy(), cuda.to_device(x0)
    device_g = cuda.to_device(g)
    host, device = adamnb.Muon(groups, lr=0.02), adamnb.Muon(groups, lr=0.02)
    host.step(host_x, g)  # compiles; the first steps are compared
    device.step(device_x, device_g)
    cuda.synchronize()
    difference = float(np.abs(device_x.copy_to_host() - host_x).max())
    contenders = {"adamnb.Muon (device)": lambda: device.step(device_x, device_g),
                  "adamnb.Muon (host)": lambda: host.step(host_x, g)}
    torch_note = None
    try:
        import torch

        if torch.cuda.is_available():
            parameter = torch.nn.Parameter(torch.from_numpy(x0.reshape(side, side)).cuda())
            parameter.grad = torch.from_numpy(g.reshape(side, side)).cuda()
            muon = torch.optim.Muon([parameter], lr=0.02)
            contenders["torch.optim.Muon (CUDA, bfloat16 products)"] = lambda: (
                muon.step(), torch.cuda.synchronize())
            torch_note = torch.__version__
        else:
            torch_note = f"torch {torch.__version__} without CUDA: skipped"
    except (ImportError, AttributeError) as error:
        torch_note = f"torch's Muon unavailable ({type(error).__name__}): skipped"
    seconds = {name: statistics.median(values)
               for name, values in interleaved(contenders, repeats).items()}
    return {"side": side, "repeats": repeats, "torch": torch_note, "seconds": seconds,
            "device_vs_host": seconds["adamnb.Muon (device)"] / seconds["adamnb.Muon (host)"],
            "first_step_max_abs_difference_device_host": difference}


def mnist_data(tiny):
    """(X, y, source): MNIST's training set if present locally, else random images of its
    shape; a toy set with ``tiny``."""
    if tiny:
        rng = np.random.default_rng(0)
        return rng.random((32, 8), dtype=np.float32), rng.integers(0, 3, 32), "random (tiny)"
    from adamnb.nn import load_mnist
    from adamnb.nn.datasets import DatasetError

    try:
        data = load_mnist(download=False)
        return data.X_train, data.y_train, "MNIST"
    except DatasetError as error:
        rng = np.random.default_rng(0)
        X = rng.random((60000, 784), dtype=np.float32)
        return X, rng.integers(0, 10, 60000), f"random images of MNIST's shape ({error})"


def mnist_epoch(tiny):
    """One epoch of the MLP on the device (after a compiling epoch) and on the CPU."""
    import adamnb
    from adamnb.nn import MLP, train
    from adamnb.nn.cuda_models import train_cuda

    cuda = _cuda()
    X, y, source = mnist_data(tiny)
    sizes = (8, 4, 3) if tiny else (784, 1000, 1000, 10)
    batch = 16 if tiny else 128
    device_model = MLP(sizes, dropout=0.5, seed=0)
    device_params = cuda.to_device(device_model.init(0))
    device_optimizer = adamnb.Adam(lr=1e-3, backend="cuda")
    history = train_cuda(device_model, device_params, device_optimizer, X, y, epochs=2,
                         batch_size=batch, progress=False)
    cpu_model = MLP(sizes, dropout=0.5, seed=0)
    cpu_params = cpu_model.init(0)
    cpu_history = train(cpu_model, cpu_params, adamnb.Adam(lr=1e-3, backend="cpu"), X, y,
                        epochs=1, batch_size=batch, progress=False)
    device_seconds, cpu_seconds = history["seconds"][1], cpu_history["seconds"][0]
    return {"data": source, "sizes": list(sizes), "examples": int(len(y)), "batch_size": batch,
            "device_epoch_seconds": {"first (compiles)": history["seconds"][0],
                                     "second": device_seconds},
            "device_train_loss": history["train_loss"],
            "cpu_epoch_seconds": cpu_seconds, "cpu_train_loss": cpu_history["train_loss"],
            "device_time_vs_cpu": device_seconds / cpu_seconds}


def _positive(text):
    """argparse type: a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON report")
    parser.add_argument("--size", type=_positive, default=10**8,
                        help="parameters of the update step")
    parser.add_argument("--repeats", type=_positive, default=20, help="timed rounds (median)")
    parser.add_argument("--side", type=_positive, default=1024, help="side of Muon's matrix")
    parser.add_argument("--tests", default="", metavar="EXPR",
                        help="pytest -k expression selecting the CUDA tests (default: all); "
                             "'none' skips them")
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS)
    parser.add_argument("--time-limit", type=float, default=450.0,
                        help="seconds; parts not started by then are skipped (default 450)")
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes, for numba's CUDA simulator (timings meaningless)")
    args = parser.parse_args(argv)
    if not args.tiny:
        from adamnb.backends import cuda as cuda_backend
        if _simulator() and cuda_backend.is_available():
            parser.error("NUMBA_ENABLE_CUDASIM=1 runs every GPU thread as a Python thread: the "
                         "full sizes would take hours; add --tiny (or unset the variable on a GPU)")
        return check(args, argv)
    args.size, args.repeats, args.side = min(args.size, 256), min(args.repeats, 1), \
        min(args.side, 6)
    # The simulator runs every thread of a block as a Python thread: small tiles and a short
    # switch interval keep it quick (as tests/test_cuda*.py do); no result changes.
    from adamnb.backends import cuda as cuda_backend
    from adamnb.nn import cuda_ops

    saved = cuda_ops.TILE, cuda_backend.DEFAULT_THREADS_PER_BLOCK, sys.getswitchinterval()
    cuda_ops.TILE, cuda_backend.DEFAULT_THREADS_PER_BLOCK = 4, 8
    sys.setswitchinterval(5e-4)
    try:
        return check(args, argv)
    finally:
        cuda_ops.TILE, cuda_backend.DEFAULT_THREADS_PER_BLOCK = saved[:2]
        sys.setswitchinterval(saved[2])


def check(args, argv):
    """Run the parts of ``args`` and write the report; 0 if every part ran without error."""

    from adamnb.backends import cuda as cuda_backend
    from adamnb.experiments import machine
    from adamnb._io import atomic_write

    started = time.perf_counter()
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "machine": machine(), "tiny": args.tiny, "parts": {}}
    if not cuda_backend.is_available():
        report["error"] = ("CUDA is unavailable: no driver or GPU was found (install the NVIDIA "
                           "driver and numba-cuda, or set NUMBA_ENABLE_CUDASIM=1 with --tiny)")
    else:
        report["device"] = device_info()
        bandwidth = None
        for part in args.parts:
            elapsed = time.perf_counter() - started
            if elapsed > args.time_limit:
                report["parts"][part] = {"skipped": f"time limit ({elapsed:.0f} s elapsed)"}
                continue
            part_started = time.perf_counter()
            try:
                if part == "tests":
                    if args.tests == "none":
                        continue
                    result = run_tests(args.tests or None,
                                       timeout=max(60.0, args.time_limit - elapsed))
                elif part == "copy_bandwidth":
                    result = copy_bandwidth(args.size, args.repeats)
                    bandwidth = result["bytes_per_second"]
                elif part == "update":
                    result = update_benchmark(args.size, args.repeats, bandwidth)
                elif part == "muon":
                    result = muon_benchmark(args.side, min(args.repeats, 5))
                else:
                    result = mnist_epoch(args.tiny)
            except Exception as error:  # noqa: BLE001 -- record it, run the next part
                result = {"error": f"{type(error).__name__}: {error}"}
            result["part_seconds"] = time.perf_counter() - part_started
            report["parts"][part] = result
            print(f"{part}: done in {result['part_seconds']:.1f} s"
                  + (f" -- {result['error']}" if "error" in result else ""), flush=True)
    report["seconds"] = time.perf_counter() - started
    with atomic_write(args.out) as out:
        json.dump(report, out, indent=2, default=str)
    print(f"Wrote {args.out} ({report['seconds']:.0f} s)")
    failed = "error" in report or any("error" in part for part in report["parts"].values()) \
        or report["parts"].get("tests", {}).get("returncode", 0) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
