"""Record the MLP's and softmax regression's outputs on fixed inputs (tests/data/mlp_bits.npz).

Run once at commit 8cfc71c (before the models were rebuilt on the layer stack) with
``python tests/data/record_mlp_bits.py``; ``tests/test_nn_bits.py`` checks that the current code
still gives these bits. Only public methods are called, so this script runs on the current code
too (``python tests/data/record_mlp_bits.py OTHER.npz``) and must give the same arrays on the
recording platform (``platform`` in the file: the matrix products' rounding depends on the BLAS
build and the CPU's kernels).
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np

from adamnb.nn import MLP, SoftmaxRegression

#: (name, model constructor, rows per batch)
CASES = [
    ("softmax64", lambda: SoftmaxRegression(6, 3, l2=0.3, dtype=np.float64), 7),
    ("softmax32", lambda: SoftmaxRegression(6, 3, l2=0.3, dtype=np.float32), 7),
    ("mlp64", lambda: MLP((6, 5, 4, 3), dtype=np.float64, seed=3), 7),
    ("mlp64_dropout", lambda: MLP((6, 5, 4, 3), dropout=0.5, input_dropout=0.2, l2=0.1,
                                  dtype=np.float64, seed=3), 7),
    ("mlp32_dropout", lambda: MLP((6, 5, 4, 3), dropout=0.5, input_dropout=0.2, l2=0.1,
                                  dtype=np.float32, seed=3), 7),
    ("mlp32_wide", lambda: MLP((50, 16, 16, 10), dropout=0.25, seed=11), 64),
]


def blas_fingerprint():
    """What the recorded bits depend on beyond the code: BLAS build and CPU."""
    config = np.show_config(mode="dicts")
    blas = config["Build Dependencies"]["blas"]
    cpu = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            if line.startswith(("model name", "cpu family", "model\t")):
                cpu.append(line.split(":", 1)[1].strip())
    except OSError:
        pass
    return json.dumps({"blas": blas.get("name"), "blas_version": blas.get("version"),
                       "machine": platform.machine(), "cpu": "|".join(cpu) or "unknown", "numpy": np.__version__})


def record():
    out = {"platform": np.array(blas_fingerprint())}
    for name, make, rows in CASES:
        model = make()
        rng = np.random.default_rng(len(name))
        X = rng.random((rows, model.sizes[0])).astype(model.dtype)
        y = rng.integers(0, model.sizes[-1], rows)
        params = model.init(5)
        out[f"{name}/init"] = params.copy()
        for _, b in model.layers(params):  # nonzero biases: no ReLU input on its kink
            b[...] = rng.normal(scale=0.3, size=b.shape)
        out[f"{name}/params"] = params.copy()
        for call in range(2):
            f, g = model.loss_and_grad(params, X, y)
            out[f"{name}/f{call}"] = np.float64(f)
            out[f"{name}/g{call}"] = g.copy()
        out[f"{name}/loss_training"] = np.float64(model.loss(params, X, y, training=True))
        out[f"{name}/loss"] = np.float64(model.loss(params, X, y))
        out[f"{name}/evaluate"] = np.array(model.evaluate(params, X, y), dtype=np.float64)
        out[f"{name}/logits"] = model.logits(params, X)
        out[f"{name}/predict"] = model.predict(params, X)
        out[f"{name}/training_calls"] = np.int64(model.training_calls)
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("mlp_bits.npz")
    np.savez_compressed(target, **record())
    print(f"wrote {target}")
