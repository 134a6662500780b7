"""Regression guard: the test functions give the bits they gave before their restructuring.

``tests/data/functions_bits.npz`` holds the values and gradients that the four public callables
of every problem (``fun``, ``grad``, ``value_and_grad``, ``value_and_grad_into``) returned, before
adamnb/problems/functions.py was rewritten to define each problem's math once, at the points of
:func:`points` (starts, minimisers, seeded random points, signed zeros; float64 and float32;
every scalable problem in 1, 2, 3 and 5 dimensions). It was written by
``python -m tests.test_functions_regression --record`` on the tree before that change (commit
8cfc71c) and must not be re-recorded from the code it guards.

This is only a guard against changed bits. Whether the values are right is the business of
tests/test_functions.py (finite differences, independent formulas, known minima).

Where the old code disagreed with itself: Beale's ``fun`` evaluated ``x y^2`` as ``(x y) y``
and its ``value_and_grad`` as ``x (y y)``, so the two could differ in the last bit. There is one
expression now, the one the value-and-gradient functions (and hence ``adamnb.minimize``) used;
``fun`` is compared with the recorded ``value_and_grad`` value there (:data:`FUN_FOLLOWS_VG`).
"""

import pathlib
import sys

import numpy as np
import pytest

from adamnb.problems.functions import FUNCTIONS, get

DATA = pathlib.Path(__file__).parent / "data" / "functions_bits.npz"

#: Problems whose old ``fun`` wrote its value differently from its ``value_and_grad``.
FUN_FOLLOWS_VG = {"beale"}


def _cases():
    for name, tf in FUNCTIONS.items():
        dims = (2,) if tf.dim is not None else (1, 2, 3, 5)
        for n in dims:
            if name == "rosenbrock" and n < 2:
                continue  # Rosenbrock's records start at n = 2
            yield name, n


def points(tf, seed):
    """Deterministic points for ``tf``: start, minimisers, signed zeros, random in the domain."""
    rng = np.random.default_rng(seed)
    lo, hi = tf.domain
    n = tf.n
    return np.vstack([
        tf.x0, tf.minimizers, np.zeros(n), np.full(n, -0.0), np.ones(n),
        rng.uniform(lo, hi, size=(6, n)),
        rng.uniform(-2.0, 2.0, size=(4, n)),
    ])


def _outputs(tf, x):
    f_fun = tf.fun(x)
    g_grad = tf.grad(x)
    f_vg, g_vg = tf.value_and_grad(x)
    g_into = np.full_like(x, np.nan)
    f_into = tf.value_and_grad_into(x, g_into)
    return (np.asarray([f_fun, f_vg, f_into], dtype=x.dtype),
            np.vstack([g_grad, g_vg, g_into]))


def compute():
    """{key: array} of every recorded output (see the module notes)."""
    arrays = {}
    for case, (name, n) in enumerate(_cases()):
        tf = get(name, n)
        for dtype in (np.float64, np.float32):
            key = f"{name}-{n}-{np.dtype(dtype).name}"
            xs = points(tf, seed=case).astype(dtype)
            values, gradients = zip(*(_outputs(tf, x) for x in xs))
            arrays[key + "-x"] = xs
            arrays[key + "-f"] = np.vstack(values)
            arrays[key + "-g"] = np.stack(gradients)
    return arrays


@pytest.fixture(scope="module")
def recorded():
    with np.load(DATA) as data:
        return dict(data)


@pytest.mark.parametrize("name,n", list(_cases()), ids=[f"{a}-{b}d" for a, b in _cases()])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_same_bits_as_before_the_restructuring(recorded, name, n, dtype):
    tf = get(name, n)
    key = f"{name}-{n}-{np.dtype(dtype).name}"
    xs = recorded[key + "-x"]
    assert xs.dtype == dtype
    old_f, old_g = recorded[key + "-f"], recorded[key + "-g"]
    for x, f_before, g_before in zip(xs, old_f, old_g):
        f_now, g_now = _outputs(tf, x)
        if name in FUN_FOLLOWS_VG:
            f_before = f_before.copy()
            f_before[0] = f_before[1]
        assert f_now.tobytes() == f_before.tobytes(), (x, f_now, f_before)
        assert g_now.tobytes() == g_before.tobytes(), (x, g_now, g_before)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        raise SystemExit("usage: python -m tests.test_functions_regression --record "
                         "(only on the tree before the restructuring; see the module notes)")
    DATA.parent.mkdir(exist_ok=True)
    np.savez_compressed(DATA, **compute())
    print(f"wrote {DATA}")
