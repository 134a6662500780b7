"""The batched CUDA Rosenbrock and Rastrigin against adamnb.problems.functions' CPU versions.

Simulator tests (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda*.py``) launch 4
threads per block and cap the grid at 2 blocks per dimension, so that threads stride over
columns and blocks over rows. The Rosenbrock gradient is the CPU's bits (the same operations in
the same order); Rastrigin's differs by an ulp in float32, where the simulator's ``math.cos``
works in float64; values are sums in a different order and agree to rounding. The PTX tests run
in the normal run.
"""

import re

import numpy as np
import pytest

from adamnb.backends import cuda as cuda_backend
from adamnb.problems import cuda_functions
from adamnb.problems import functions
from tests.test_cuda import APPROXIMATE, _ptx_toolchain_missing, needs_cuda

NAMES = ["rosenbrock", "rastrigin"]
DTYPES = [np.float32, np.float64]
VALUE_RTOL = {np.float32: 2e-6, np.float64: 1e-14}




@pytest.fixture(autouse=True)
def _tiny_launches(monkeypatch):
    """4 threads per block, and 2 blocks (the simulator's one SM) per launch at most."""
    monkeypatch.setattr(cuda_functions, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(cuda_backend, "BLOCKS_PER_SM", 2)


def _cpu(name):
    return getattr(functions, f"{name}_value_and_grad")


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_batch_matches_the_cpu_functions_row_by_row(name, dtype):
    cuda = cuda_backend.numba_cuda()
    rng = np.random.default_rng(7)
    # 11 columns over 2 blocks of 4 threads; a row with the minimiser's and signed zeros
    X = np.vstack([rng.uniform(-2, 2, size=(3, 11)),
                   [1, 1, 1, -0.0, 0, -0.0, 1, 1, 0, -0.0, 1]]).astype(dtype)
    f, G = getattr(cuda_functions, f"{name}_batch")(cuda.to_device(X))
    f, G = f.copy_to_host(), G.copy_to_host()
    assert f.dtype == G.dtype == dtype and f.shape == (4,) and G.shape == X.shape
    for r in range(4):
        expected_f, expected_g = _cpu(name)(X[r])
        assert f[r] == pytest.approx(expected_f, rel=VALUE_RTOL[dtype])
        if name == "rosenbrock" or dtype is np.float64:
            assert G[r].tobytes() == expected_g.tobytes(), (G[r], expected_g)  # signs of 0 too
        else:
            np.testing.assert_allclose(G[r], expected_g, rtol=1e-6, atol=1e-6)


@needs_cuda
def test_rows_beyond_the_grid_short_rows_and_output_buffers():
    cuda = cuda_backend.numba_cuda()
    rng = np.random.default_rng(8)
    # 5 rows on a 2 x 1 grid: blockIdx.y strides over the rows; rows of 1 and 2 columns too.
    for n in (1, 2, 9):
        X = rng.uniform(-2, 2, size=(5, n))
        f_out, G_out = cuda.device_array(5), cuda.device_array((5, n))
        f, G = cuda_functions.rosenbrock_batch(cuda.to_device(X), f_out, G_out)
        assert f is f_out and G is G_out
        for r in range(5):
            expected_f, expected_g = functions.rosenbrock_value_and_grad(X[r])
            assert f.copy_to_host()[r] == pytest.approx(expected_f, rel=1e-14, abs=1e-300)
            np.testing.assert_array_equal(G.copy_to_host()[r], expected_g)
    f, G = cuda_functions.rastrigin_batch(cuda.device_array((0, 3)))
    assert f.shape == (0,) and G.shape == (0, 3)


@needs_cuda
def test_batch_inputs_are_checked():
    cuda = cuda_backend.numba_cuda()
    with pytest.raises(TypeError, match="NumPy array on the host"):
        cuda_functions.rosenbrock_batch(np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        cuda_functions.rosenbrock_batch(cuda.to_device(np.ones(3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        cuda_functions.rosenbrock_batch(cuda.to_device(np.ones((2, 3), np.int64)))
    with pytest.raises(ValueError, match="G must be"):
        cuda_functions.rosenbrock_batch(cuda.to_device(np.ones((2, 3))),
                                        G=cuda.device_array((2, 3), np.float32))
    with pytest.raises(ValueError, match="power of two"):
        cuda_functions.rastrigin_batch(cuda.to_device(np.ones((2, 3))), threads_per_block=3)


@needs_cuda
@pytest.mark.parametrize("name", NAMES)
def test_device_objective_returns_a_float_and_alternates_two_gradient_buffers(name):
    cuda = cuda_backend.numba_cuda()
    objective = cuda_functions.OBJECTIVES[name]
    points = [np.linspace(-1.5, 2.0, 9).astype(np.float32) + shift for shift in (0, 0.1, 0.2)]
    f1, g1 = objective(cuda.to_device(points[0]))
    expected_f, expected_g = _cpu(name)(points[0])
    assert type(f1) is float and f1 == pytest.approx(expected_f, rel=2e-6)
    assert g1.shape == (9,) and g1.dtype == np.float32
    np.testing.assert_allclose(g1.copy_to_host(), expected_g, rtol=1e-6, atol=1e-6)
    # Two buffers, alternately: the previous gradient survives the next call ...
    _, g2 = objective(cuda.to_device(points[1]))
    np.testing.assert_allclose(g1.copy_to_host(), expected_g, rtol=1e-6, atol=1e-6)
    # ... and the call after next reuses its buffer.
    _, g3 = objective(cuda.to_device(points[2]))
    np.testing.assert_array_equal(g1.copy_to_host(), g3.copy_to_host())
    assert not np.array_equal(g2.copy_to_host(), g3.copy_to_host())
    with pytest.raises(ValueError, match="1-D"):
        objective(cuda.to_device(np.ones((2, 2))))


@needs_cuda
def test_minimize_on_device_with_rastrigin_follows_the_host_run():
    import adamnb
    from adamnb.optimize._device import minimize_on_device
    cuda = cuda_backend.numba_cuda()
    x0 = np.linspace(2.5, 3.5, 6)
    res = minimize_on_device("adam", cuda_functions.rastrigin, cuda.to_device(x0), jac=True,
                             lr=0.02, maxiter=8)
    host = adamnb.minimize(lambda x: functions.rastrigin_value_and_grad(x), x0, method="adam",
                           jac=True, options={"lr": 0.02, "maxiter": 8})
    assert res.fun < functions.rastrigin(x0) and (res.nit, res.status) == (host.nit, host.status)
    np.testing.assert_allclose(res.x.copy_to_host(), host.x, rtol=1e-14)
    assert res.fun == pytest.approx(host.fun, rel=1e-14)


def test_objective_names_are_checked():
    with pytest.raises(ValueError, match="Invalid objective"):
        cuda_functions.DeviceObjective("ackley")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_kernels_compile_to_ptx_for_sm90(name, dtype):
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    ptx = cuda_functions.kernel_ptx(name, dtype, cc=(9, 0))
    assert set(ptx) == {"value_and_grad", "row_sums"}
    for text in ptx.values():
        assert ".target sm_90" in text and ".entry" in text
        assert not APPROXIMATE.search(text)
    value_and_grad = ptx["value_and_grad"]
    assert "bar.sync" in value_and_grad
    if dtype is np.float64:
        assert re.search(r"\b(?:add|mul|fma\.rn)\.f64\b", value_and_grad)
        return
    assert ".f64" not in ptx["row_sums"]
    used = {op for op in re.findall(r"^\s*(?:@!?%p\d+\s+)?([a-z][\w.]*)", value_and_grad, re.M)
            if "f64" in op}
    if name == "rosenbrock":
        assert not used, used
    else:
        # Only libdevice's cosf/sinf slow path for huge arguments (Payne-Hanek): an int64 to
        # float64 conversion, one multiplication by pi/2 * 2**-64, the rounding back.
        assert used <= {"cvt.rn.f64.s64", "mul.f64", "cvt.rn.f32.f64"}, used
        multiplications = re.findall(r"mul\.f64\s+[^;]+;", value_and_grad)
        assert all("0d3BF921FB54442D19" in m for m in multiplications), multiplications
