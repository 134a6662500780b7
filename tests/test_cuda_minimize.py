"""minimize_on_device: the minimize contract on CUDA device arrays, against the host driver.

Run in numba's CUDA simulator, in its own process (numba reads the variable once, at import)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda*.py

Every launch uses 4 threads per block, so an 11-element vector spans three blocks and the norm
reduction two passes. In the simulator the kernels compute exactly what the CPU kernels compute,
so a device run must follow the host run of :func:`adamnb.minimize` bit for bit (iterates, nit,
status); only the objective values of the device Rosenbrock differ in rounding (summed as a tree).
In the normal run the simulator tests skip; the checks that need no device run.
"""

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import Bounds, OptimizeWarning

import adamnb
from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules, schedules
from adamnb.optimize import _device as _device_minimize
from adamnb.optimize._device import minimize_on_device
from adamnb.problems import cuda_functions as cuda_objectives
from adamnb.problems import functions
from tests.test_cuda import SIMULATOR, _ptx_toolchain_missing, needs_cuda

N = 11
THREADS = 4


@pytest.fixture(autouse=True)
def _tiny_blocks(monkeypatch):
    monkeypatch.setattr(_device_minimize, "THREADS_PER_BLOCK", THREADS)
    monkeypatch.setattr(cuda_objectives, "THREADS_PER_BLOCK", THREADS)
    from adamnb.nn import cuda_ops  # the matrix steps' products (Muon): 2 x 2 threads
    monkeypatch.setattr(cuda_ops, "TILE", 2)


def _cuda():
    from numba import cuda
    return cuda


def _same_bits(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


class HostGradient:
    """A device objective computed on the host (for testing the driver, not for speed):
    ``f = sum(c * x**2) / 2``, ``g = c * x`` with ``c`` from 1 to 3 times ``scale`` (all ones
    when ``flat``); after ``nan_after`` evaluations g holds a NaN (or f is inf)."""

    def __init__(self, scale=1.0, nan_after=None, nan_in="g", flat=False):
        self.scale, self.nan_after, self.nan_in, self.flat = scale, nan_after, nan_in, flat
        self.calls = 0

    def host(self, x):
        self.calls += 1
        c = np.linspace(1.0, 1.0 if self.flat else 3.0, x.size).astype(x.dtype)
        c *= x.dtype.type(self.scale)
        f, g = float(0.5 * np.sum(c * x * x)), c * x
        if self.nan_after is not None and self.calls > self.nan_after:
            if self.nan_in == "g":
                g[3] = np.nan
            else:
                f = math.inf
        return f, g

    def __call__(self, x):
        f, g = self.host(x.copy_to_host())
        return f, _cuda().to_device(g)


def _x0(dtype, n=N):
    return np.linspace(-1.2, 1.5, n).astype(dtype)


# --- parity with the host driver ------------------------------------------------------------------

PARITY_CASES = [
    ("adam", {"lr": 0.01}),
    ("amsgrad", {"lr": 0.02, "weight_decay": 0.01}),
    ("nadam", {"lr": schedules.Exponential(0.02, 0.9)}),
    ("sgd", {"lr": 1e-4, "momentum": 0.9, "nesterov": True}),
]


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("method, options", PARITY_CASES, ids=[m for m, _ in PARITY_CASES])
def test_device_run_follows_the_host_run_on_rosenbrock(method, options, dtype):
    cuda = _cuda()
    x0 = _x0(dtype)
    d_x0 = cuda.to_device(x0)
    steps = 8
    host = adamnb.minimize(functions.rosenbrock_value_and_grad, x0, method=method, jac=True,
                           options={"maxiter": steps, **options})
    device = minimize_on_device(method, cuda_objectives.rosenbrock, d_x0, jac=True,
                                maxiter=steps, **options)
    assert cuda_backend.is_device_array(device.x) and cuda_backend.is_device_array(device.jac)
    assert _same_bits(device.x.copy_to_host(), host.x)
    assert _same_bits(device.jac.copy_to_host(), host.jac)
    assert device.fun == pytest.approx(host.fun, rel=1e-5 if dtype is np.float32 else 1e-13)
    assert (device.nit, device.nfev, device.njev, device.status, device.success) == \
        (host.nit, host.nfev, host.njev, 1, False)
    assert device.message == host.message
    assert _same_bits(d_x0.copy_to_host(), x0)  # x0 is never modified


@needs_cuda
def test_separate_jac_bounds_and_return_all_follow_the_host_run():
    cuda = _cuda()
    x0 = _x0(np.float64)
    bounds = Bounds(np.zeros(N), np.full(N, 0.5))
    fun = functions.rosenbrock
    jac = functions.rosenbrock_grad

    def device_fun(x):
        return cuda_objectives.rosenbrock(x)[0]

    def device_jac(x):
        return cuda_objectives.rosenbrock(x)[1]

    options = {"lr": 0.05, "maxiter": 6, "return_all": True}
    host = adamnb.minimize(fun, x0, method="adam", jac=jac, bounds=bounds, options=options)
    device = minimize_on_device(rules.RULES["adam"], device_fun, cuda.to_device(x0), jac=device_jac,
                                bounds=bounds, **options)
    x = device.x.copy_to_host()
    assert _same_bits(x, host.x)
    assert x.min() >= 0 and x.max() <= 0.5 and np.any(x == 0)  # the projection acted
    assert len(device.allvecs) == len(host.allvecs) == 7
    assert all(isinstance(v, np.ndarray) and _same_bits(v, w)
               for v, w in zip(device.allvecs, host.allvecs))
    assert _same_bits(device.allvecs[0], np.clip(x0, 0, 0.5))  # x0's copy projected first
    np.testing.assert_allclose(device.fun_history, host.fun_history, rtol=1e-13)
    assert (device.nfev, device.njev) == (host.nfev, host.njev) == (7, 7)


@needs_cuda
def test_stochastic_args_draw_one_batch_per_step_as_on_the_host():
    cuda = _cuda()
    x0 = _x0(np.float32)
    scales = [1.0, 2.0, 0.5, 1.5, 3.0, 1.0, 0.25]

    def host_fun(x, s):
        return HostGradient(s).host(x)

    def device_fun(x, s):
        return HostGradient(s)(x)

    host = adamnb.minimize(host_fun, x0, args=iter([(s,) for s in scales]), method="rmsprop",
                           jac=True, options={"lr": 0.01, "maxiter": 6})
    device = minimize_on_device(rules.RULES["rmsprop"], device_fun, cuda.to_device(x0),
                                args=iter([(s,) for s in scales]), jac=True, lr=0.01, maxiter=6)
    assert _same_bits(device.x.copy_to_host(), host.x)
    assert device.fun == host.fun and device.status == host.status == 1
    with pytest.raises(ValueError, match="exhausted"):
        minimize_on_device(rules.RULES["rmsprop"], device_fun, cuda.to_device(x0),
                           args=iter([(1.0,)] * 3), jac=True, maxiter=6)


# --- status codes ---------------------------------------------------------------------------------

@needs_cuda
def test_gtol_stops_with_status_0():
    cuda = _cuda()
    # SGD with lr = 1 on f = |x|^2 / 2 jumps to 0 in one step: the second gradient is 0.
    x0 = cuda.to_device(_x0(np.float64))
    res = minimize_on_device(rules.RULES["sgd"], HostGradient(flat=True), x0, jac=True, lr=1.0,
                             maxiter=50, gtol=1e-3)
    assert (res.status, res.success, res.nit, res.nfev) == (0, True, 1, 2)
    assert not np.any(res.x.copy_to_host()) and not np.any(res.jac.copy_to_host())
    assert res.message.startswith("Optimization terminated successfully")
    res = minimize_on_device(rules.RULES["sgd"], HostGradient(), x0, jac=True, maxiter=0)
    assert (res.status, res.nit, res.nfev) == (1, 0, 1)


@needs_cuda
@pytest.mark.parametrize("nan_in", ["g", "f"])
def test_non_finite_returns_the_last_finite_iterate_with_status_3(nan_in):
    cuda = _cuda()
    seen = []
    res = minimize_on_device("adam", HostGradient(nan_after=4, nan_in=nan_in),
                             cuda.to_device(_x0(np.float64)), jac=True, lr=0.1, maxiter=20,
                             callback=lambda xk: seen.append(xk.copy_to_host()))
    assert res.status == 3 and not res.success and "NaN or inf" in res.message
    assert res.nit == 3 and res.nfev == 5  # the 4th step led to the non-finite 5th evaluation
    assert len(seen) == 3 and _same_bits(res.x.copy_to_host(), seen[-1])
    expected_f, expected_g = HostGradient().host(seen[-1])
    assert res.fun == expected_f and _same_bits(res.jac.copy_to_host(), expected_g)
    # a non-finite start: status 3 at once, nothing stepped
    res = minimize_on_device("adam", HostGradient(nan_after=0, nan_in=nan_in),
                             cuda.to_device(_x0(np.float64)), jac=True, maxiter=20)
    assert (res.status, res.nit) == (3, 0)


@needs_cuda
def test_callback_styles_get_device_copies_and_stop_iteration_is_status_99():
    cuda = _cuda()
    calls = []

    def plain(xk):
        assert cuda_backend.is_device_array(xk)
        calls.append(xk)
        if len(calls) == 3:
            raise StopIteration

    res = minimize_on_device("adam", HostGradient(), cuda.to_device(_x0(np.float32)), jac=True,
                             lr=0.1, maxiter=20, callback=plain)
    assert (res.status, res.nit, res.success) == (99, 3, False)
    assert "StopIteration" in res.message
    assert _same_bits(calls[-1].copy_to_host(), res.x.copy_to_host())
    assert calls[-1] is not res.x  # a copy: later steps do not change what the callback kept
    assert not _same_bits(calls[0].copy_to_host(), calls[1].copy_to_host())

    results = []

    def modern(intermediate_result):
        results.append(intermediate_result)

    res = minimize_on_device("sgd", HostGradient(), cuda.to_device(_x0(np.float32)), jac=True,
                             lr=0.1, maxiter=2, callback=modern)
    assert len(results) == 2 and results[-1].fun == res.fun
    assert cuda_backend.is_device_array(results[-1].x)
    assert _same_bits(results[-1].x.copy_to_host(), res.x.copy_to_host())


# --- checks ---------------------------------------------------------------------------------------

@needs_cuda
def test_inputs_and_options_are_checked():
    cuda = _cuda()
    d_x0 = cuda.to_device(_x0(np.float64))
    with pytest.warns(OptimizeWarning, match="Unknown solver option: betas") as record:
        minimize_on_device("adam", HostGradient(), d_x0, jac=True, maxiter=1, betas=(0.9, 0.9))
    unknown = [w for w in record if issubclass(w.category, OptimizeWarning)]
    assert unknown[0].filename == __file__  # pointed at the caller, not into adamnb
    with pytest.warns(RuntimeWarning, match="Hessian"):
        minimize_on_device("adam", HostGradient(), d_x0, jac=True, maxiter=1, hess=lambda x: x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol, parallel and eps are known options
        res = minimize_on_device("adam", HostGradient(), d_x0, jac=True, maxiter=1, tol=0.5,
                                 parallel=True, eps=1e-3)
    assert res.nit == 1
    for jac in (None, "2-point", "3-point"):
        with pytest.raises(ValueError, match="not available on device arrays"):
            minimize_on_device("adam", HostGradient(), d_x0, jac=jac)
    with pytest.raises(TypeError, match="NumPy array on the host"):
        minimize_on_device("adam", HostGradient(), _x0(np.float64), jac=True)
    with pytest.raises(TypeError, match="float32 or float64"):
        minimize_on_device("adam", HostGradient(), cuda.to_device(np.arange(4)), jac=True)
    with pytest.raises(ValueError, match="1-D") as error:
        minimize_on_device("adam", HostGradient(), cuda.to_device(np.ones((2, 2))), jac=True)
    assert "in place" not in str(error.value)  # minimize never changes x0
    with pytest.raises(ValueError, match="empty"):
        minimize_on_device("adam", HostGradient(), cuda.device_array(0), jac=True)
    bad = _x0(np.float64)
    bad[2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        minimize_on_device("adam", HostGradient(), cuda.to_device(bad), jac=True)
    with pytest.raises(TypeError, match="gradient is a NumPy array"):
        minimize_on_device("adam", lambda x: (1.0, x.copy_to_host()), d_x0, jac=True)
    with pytest.raises(ValueError, match="gradient is float32"):
        minimize_on_device("adam", lambda x: (1.0, cuda.to_device(np.ones(N, np.float32))),
                           d_x0, jac=True)
    with pytest.raises(ValueError, match="tuple"):
        minimize_on_device("adam", lambda x: 1.0, d_x0, jac=True)
    with pytest.raises(ValueError, match="Invalid lr"):
        minimize_on_device("adam", HostGradient(), d_x0, jac=True, lr=-1.0)
    with pytest.raises(ValueError, match="maxiter"):
        minimize_on_device("adam", HostGradient(), d_x0, jac=True, maxiter=-1)
    # f may also come back as a one-element device array
    res = minimize_on_device("adam", lambda x: (cuda.to_device(np.array([2.5])),
                                                HostGradient()(x)[1]), d_x0, jac=True, maxiter=1)
    assert res.fun == 2.5


@needs_cuda
def test_disp_prints_the_summary(capsys):
    _cuda()
    minimize_on_device("adam", HostGradient(), _cuda().to_device(_x0(np.float64)), jac=True,
                       maxiter=2, disp=True)
    out = capsys.readouterr().out
    assert "Maximum number of iterations" in out and "Iterations: 2" in out


# --- the normal run: no device needed -------------------------------------------------------------

def test_without_cuda_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(cuda_backend, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="minimize on device arrays needs CUDA"):
        minimize_on_device("adam", HostGradient(), object(), jac=True)


def test_importing_the_device_modules_does_not_import_numba_cuda():
    import subprocess
    import sys
    code = ("import sys, adamnb, adamnb.optimize._device, adamnb.problems.cuda_functions, "
            "adamnb.nn.cuda_models; print('numba.cuda' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_simulator_flag_is_what_the_skips_say():
    assert SIMULATOR == cuda_backend.simulator_enabled()


def test_the_bounds_projection_compiles_to_ptx_for_sm90():
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    from numba import float32
    vector = float32[::1]
    ptx = cuda_backend.compile_kernel_ptx(cuda_backend._project_function(),
                                          (vector, vector, vector), cc=(9, 0))
    assert ".target sm_90" in ptx and ".entry" in ptx and ".f64" not in ptx
    assert "setp.gt.f32" in ptx or "setp.lt.f32" in ptx or "max.f32" in ptx
    for dtype in (np.float32, np.float64):  # the convergence measure's reduction
        ptx = cuda_backend.compile_reduction_ptx("stationarity", dtype)
        assert ".entry" in ptx and (dtype == np.float64 or ".f64" not in ptx)


@needs_cuda
@pytest.mark.parametrize("method", ["adam", adamnb.adam], ids=["name", "callable"])
def test_adamnb_minimize_dispatches_device_arrays_to_the_device(method):
    cuda = _cuda()
    x0 = _x0(np.float32)
    host = adamnb.minimize(functions.rosenbrock_value_and_grad, x0, method="adam", jac=True,
                           options={"maxiter": 5, "lr": 0.01})
    device = adamnb.minimize(cuda_objectives.rosenbrock, cuda.to_device(x0), method=method,
                             jac=True, options={"maxiter": 5, "lr": 0.01})
    assert cuda_backend.is_device_array(device.x)
    assert _same_bits(device.x.copy_to_host(), host.x)
    assert device.nit == host.nit == 5


@needs_cuda
def test_schedule_free_fun_and_jac_are_at_res_x_on_the_device():
    """As on the host (review S1): res.fun and res.jac are the objective and gradient at res.x,
    the evaluation point, evaluated once more after the run and counted."""
    objective = HostGradient()
    x0 = np.linspace(-1.0, 2.0, N)
    options = {"lr": 0.05, "maxiter": 30, "gtol": 0}
    res = minimize_on_device("schedule_free_adamw", objective, _cuda().to_device(x0), jac=True,
                             **options)
    x = res.x.copy_to_host()
    expected_f, expected_g = HostGradient().host(x)
    assert res.fun == expected_f and _same_bits(res.jac.copy_to_host(), expected_g)
    assert not _same_bits(x, res.y.copy_to_host())
    assert (res.nit, res.nfev, res.njev) == (30, 32, 32)
    host = adamnb.minimize(HostGradient().host, x0, method="schedule_free_adamw", jac=True,
                           options=options)
    assert _same_bits(x, host.x) and res.fun == host.fun
