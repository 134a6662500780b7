"""The matrix steps (Muon, Adafactor's factored moments) on CUDA device arrays: the same step
(adamnb.optim.matrix) as on the host, through every front end that takes groups: the optimizer
classes, minimize's device driver (with bounds), and checkpoints moving between the devices.

The host runs are the reference here because tests/test_groups.py checks them against torch and
tests/reference.py; the device must follow them to rounding. In numba's simulator the products
and sums run in a different order than NumPy's BLAS and the host's float64 sums, so "to rounding"
is 1e-12 relative in float64 and 1e-4 in float32 (Newton-Schulz amplifies float32 rounding over
its iterations). Run in its own process::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda_matrix.py
"""

import re

import numpy as np
import pytest

import adamnb
from adamnb.backends import cuda as cuda_backend
from adamnb.nn import MLP
from adamnb.optimize import _device
from adamnb.optim import matrix
from tests.test_cuda import APPROXIMATE, F32_ARITHMETIC, _ptx_toolchain_missing, needs_cuda
from tests.test_groups import mlp_problem

STEPS = 3
TOLERANCE = {np.float64: (1e-12, 1e-14), np.float32: (1e-4, 1e-6)}

#: One tall and one wide kernel (torch's (4, 3) and (2, 4)), small: the simulator starts a
#: Python thread per GPU thread of every launch.
SIZES = (3, 4, 2)

#: (optimizer, options, the biases' options, dtype): Muon with AdamW for the biases (both of
#: torch's lr scalings, with and without Nesterov), Adafactor with its factored moments (maximize
#: flips the update); each rule in both dtypes.
CASES = [
    ("Muon", {"lr": 0.02}, {"method": "adamw", "lr": 0.01}, np.float32),
    ("Muon", {"lr": 0.02, "nesterov": False, "momentum": 0.3, "adjust_lr_fn": "match_rms_adamw",
              "ns_steps": 3}, {"lr": 0.01}, np.float64),
    ("Adafactor", {"lr": 0.05, "weight_decay": 0.1}, {}, np.float64),
    ("Adafactor", {"lr": 0.05, "maximize": True, "beta2_decay": -0.5}, {}, np.float32),
]
CASE_IDS = ["muon-float32", "muon-plain-momentum-float64", "adafactor-float64",
            "adafactor-maximize-float32"]


@pytest.fixture(autouse=True)
def _small_launches(monkeypatch):
    # the simulator runs a thread per GPU thread: small tiles and blocks keep it quick, and
    # several blocks per launch exercise the grid-stride loops
    from adamnb.nn import cuda_ops
    monkeypatch.setattr(cuda_ops, "TILE", 2)
    monkeypatch.setattr(cuda_backend, "DEFAULT_THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(cuda_backend, "BLOCKS_PER_SM", 2)
    monkeypatch.setattr(_device, "THREADS_PER_BLOCK", 4)


def _cuda():
    from numba import cuda
    return cuda


def _optimizer(name, options, bias_options, dtype):
    model, _, _ = mlp_problem(dtype=dtype, sizes=SIZES)
    return getattr(adamnb, name)(model.param_groups(**bias_options), **options)


def _assert_close(got, want, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    scale = np.abs(want).max() if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(scale, 1.0), err_msg=what)


@needs_cuda
@pytest.mark.parametrize("name, options, bias_options, dtype", CASES, ids=CASE_IDS)
def test_the_device_class_follows_the_host_class(name, options, bias_options, dtype):
    model, x0, grad = mlp_problem(dtype=dtype, sizes=SIZES)
    host, device = (_optimizer(name, options, bias_options, dtype) for _ in range(2))
    x, d_x = x0.copy(), _cuda().to_device(x0)
    assert any(piece.matrix for piece in host._layout_for(x.size).pieces)
    for t in range(1, STEPS + 1):
        g = grad(x, t)  # both take the host iterate's gradient: the steps compare one by one
        host.step(x, g)
        device.step(d_x, _cuda().to_device(g))
        _assert_close(d_x.copy_to_host(), x, dtype, f"x at step {t}")
        # the device's iterate follows the host's; carry on from the host's
        d_x = _cuda().to_device(x)
    assert np.abs(x - x0).max() > 1e-3
    for h_state, d_state in zip(host.state_dict()["state"], device.state_dict()["state"]):
        assert h_state.keys() == d_state.keys()
        for slot in h_state:
            _assert_close(d_state[slot], h_state[slot], dtype, slot)


@needs_cuda
def test_a_device_checkpoint_with_matrix_state_continues_on_the_host():
    model, x0, grad = mlp_problem(sizes=SIZES)
    device = _optimizer("Muon", {"lr": 0.02}, {}, np.float64)
    d_x = _cuda().to_device(x0)
    for t in (1, 2):
        device.step(d_x, _cuda().to_device(grad(d_x.copy_to_host(), t)))
    saved = device.state_dict()
    host = _optimizer("Muon", {"lr": 0.02}, {}, np.float64)
    host.load_state_dict(saved)
    x = d_x.copy_to_host()
    g = grad(x, 3)
    host.step(x, g)
    device.step(d_x, _cuda().to_device(g))
    _assert_close(d_x.copy_to_host(), x, np.float64, "after the checkpoint")


class _Quadratic:
    """A device objective computed on the host: f = |x - target|^2 / 2, g = x - target."""

    def __init__(self, target):
        self.target = target

    def __call__(self, x):
        host = x.copy_to_host()
        diff = host - self.target
        return 0.5 * float(diff @ diff), _cuda().to_device(diff)


@needs_cuda
@pytest.mark.parametrize("method, options", [("muon", {"lr": 0.05}),
                                             ("adafactor", {"lr": 0.05})], ids=["muon", "adafactor"])
@pytest.mark.parametrize("bounded", [False, True], ids=["free", "bounded"])
def test_minimize_on_the_device_with_matrix_groups_follows_the_host(method, options, bounded):
    model = MLP(SIZES, dtype=np.float64)
    x0 = model.init(seed=1)
    target = np.random.default_rng(2).normal(size=x0.size)
    groups = model.param_groups()
    bounds = [(-0.3, 0.3)] * x0.size if bounded else None
    settings = {**options, "groups": groups, "maxiter": 6, "gtol": 0.0}
    objective = _Quadratic(target)
    host = adamnb.minimize(lambda x: (0.5 * float((x - target) @ (x - target)), x - target),
                           x0, method=method, jac=True, bounds=bounds, options=settings)
    device = adamnb.minimize(objective, _cuda().to_device(x0), method=method, jac=True,
                             bounds=bounds, options=settings)
    assert (device.status, device.nit) == (host.status, host.nit) == (1, 6)
    _assert_close(device.x.copy_to_host(), host.x, np.float64, "x")
    np.testing.assert_allclose(device.fun, host.fun, rtol=1e-12)
    if bounded:
        assert np.abs(device.x.copy_to_host()).max() <= 0.3
        assert np.abs(host.x).max() == 0.3  # the bounds act
    assert np.abs(host.x - x0).max() > 1e-2


@needs_cuda
def test_a_nan_gradient_in_a_matrix_group_on_the_device_is_status_3():
    model = MLP(SIZES, dtype=np.float64)
    x0 = model.init(seed=1)
    calls = []

    def objective(x):
        host = x.copy_to_host()
        calls.append(1)
        g = host - 1.0
        if len(calls) > 3:
            g[2] = np.nan  # inside the first kernel, a matrix view
        return 0.5 * float((host - 1.0) @ (host - 1.0)), _cuda().to_device(g)

    options = {"lr": 0.02, "groups": model.param_groups(), "maxiter": 10}
    res = adamnb.minimize(objective, _cuda().to_device(x0), method="muon", jac=True,
                          options=options)
    assert res.status == 3 and res.nit == 2
    # the last finite iterate (the one the matrix step saved before the step that met the NaN)
    # and the gradient there: those of two steps on the host
    two = adamnb.minimize(lambda x: (0.5 * float((x - 1.0) @ (x - 1.0)), x - 1.0), x0,
                          method="muon", jac=True, options={**options, "maxiter": 2, "gtol": 0})
    _assert_close(res.x.copy_to_host(), two.x, np.float64, "x")
    _assert_close(res.jac.copy_to_host(), two.x - 1.0, np.float64, "jac")


# --- the normal run: no device needed -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_matrix_element_compiles_to_ptx_for_sm90(dtype):
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    signatures = matrix.element_signatures(dtype)
    assert set(signatures) == set(matrix.ELEMENTS)
    for element, signature in signatures.items():
        dimensions, arity = matrix.ELEMENTS[element]
        source = cuda_backend.elementwise_function(element, dimensions, arity)
        text = cuda_backend.compile_kernel_ptx(source, signature, (9, 0))
        name = element.__name__
        assert ".target sm_90" in text and ".entry" in text, name
        assert not APPROXIMATE.search(text), (name, APPROXIMATE.search(text))
        if dtype is np.float32:
            # no float64 work at all in float32 kernels, not even conversions
            assert ".f64" not in text, (name, sorted(set(re.findall(r"\b[\w.]+\.f64\b", text))))
            assert F32_ARITHMETIC.search(text) or re.search(r"\bdiv\.rn\.f32\b", text), name
