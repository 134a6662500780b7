"""The CUDA backend: kernels from the same element math, checked without a GPU.

Two ways to run this file and its siblings ``tests/test_cuda_*.py`` (the device minimize, the
batched objectives, the MLP), each in its own process (numba reads NUMBA_ENABLE_CUDASIM once, at
import):

* ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda*.py``: the kernels run in numba's
  CUDA simulator, launched with tiny blocks and grids so that every launch spans several blocks
  and every thread strides over several elements (as STUMPY tests its GPU kernels), and are
  compared bit for bit with the CPU kernels; the optimizer classes run on simulated device
  arrays.
* ``python -m pytest tests/test_cuda*.py`` (the normal run): every kernel is compiled to PTX for
  sm_90 by NVVM, which needs no GPU, and the float32 PTX is checked for float64 work and
  approximate division/square roots. The simulator tests skip unless a GPU is present.
"""

import dataclasses
import functools
import math
import re
import subprocess
import sys

import numpy as np
import pytest

import adamnb
from adamnb.backends import cpu as kernels
from adamnb.backends import cuda as cuda_backend
from adamnb.backends.jit import elementwise
from adamnb.optim import rules
from adamnb.optim.schedules import as_schedule
from tests.test_rules import CASE_IDS, CASES, optimizer_for

SIMULATOR = cuda_backend.simulator_enabled()
AVAILABLE = cuda_backend.is_available()

needs_cuda = pytest.mark.skipif(
    not AVAILABLE, reason="needs a CUDA GPU or numba's simulator: run "
    "NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda*.py in its own process")
needs_gpu = pytest.mark.skipif(SIMULATOR or not AVAILABLE, reason="needs a real CUDA GPU")

DTYPES = [np.float32, np.float64]
N = 100
STEPS = 10
# Launch configuration of the parity tests: 3 blocks of 8 threads, so 24 threads cover 100
# elements and each thread takes 4 or 5 turns of the grid-stride loop.
THREADS, BLOCKS = 8, 3

# Where the simulator is not float32 arithmetic: Python's math.sqrt returns a Python float, and
# Adadelta divides two square roots, so the simulator forms that quotient in float64 and rounds it
# once to float32, while the compiled kernels divide the two float32 roots (1-2 ulp apart).
SIMULATOR_FLOAT64_QUOTIENT = {"adadelta"}
# Rules with sums inside the step (LAMB, Prodigy, Adafactor): the device folds the sums in a
# shared-memory tree, the CPU kernels in fixed chunks (adamnb.backends.cpu), so the sums, and the
# steps, agree to rounding (a few ulps), not to the bit; bit-equality would cost the device its
# parallel reduction. The rounding compounds over the steps, and elements that cancel to near zero
# carry it at the scale of their vector: compared relative to each vector's largest element.
REDUCTION_RULES = {name for name, rule in rules.RULES.items() if rule.reductions}
REDUCTION_RTOL = {np.float32: 2e-5, np.float64: 1e-12}
# On a real GPU, NVVM fuses multiply-adds that the CPU kernels round twice, so results agree to
# rounding only (not yet measured on hardware: these tolerances are a first guess).
GPU_TOLERANCE = {np.float32: (1e-5, 1e-6), np.float64: (1e-12, 1e-14)}  # rtol, atol


def _cuda():
    from numba import cuda
    return cuda


def _gradient(rng, x):
    return (rng.normal(size=x.size) + 0.5 * x).astype(x.dtype)


def _assert_same(gpu, cpu, what, rule=None):
    """Bit-identical in the simulator (but see SIMULATOR_FLOAT64_QUOTIENT), close on a GPU."""
    dtype = cpu.dtype.type
    if SIMULATOR and rule in REDUCTION_RULES:
        scale = np.abs(cpu).max(axis=-1, keepdims=True) if cpu.size else 0.0
        error = np.abs(gpu.astype(np.float64) - cpu)
        assert (error <= REDUCTION_RTOL[dtype] * scale).all(), (what, error.max())
    elif SIMULATOR and not (dtype is np.float32 and rule in SIMULATOR_FLOAT64_QUOTIENT):
        assert gpu.tobytes() == cpu.tobytes(), (what, np.abs(gpu - cpu).max())
    elif SIMULATOR:
        np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=1e-30, err_msg=what)
    else:
        rtol, atol = GPU_TOLERANCE[dtype]
        np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=atol, err_msg=what)


# --- kernels --------------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
def test_kernel_matches_cpu_kernel_step_for_step(method, options, dtype):
    cuda = _cuda()
    opt = optimizer_for(method, **options)  # only for its rule, options and initial state
    rule, validated = opt.rule, opt.options
    rng = np.random.default_rng(0)
    x = rng.normal(size=N).astype(dtype)
    state = rule.state_vectors(validated, x.size, x.dtype)
    carry = rule.carry_vector(validated, x.dtype)
    d_x, d_state, d_carry = cuda.to_device(x), cuda.to_device(state), cuda.to_device(carry)
    stream = rule.stream(validated, as_schedule(validated["lr"]), dtype)
    cpu = kernels.cpu_kernel(rule, False)
    for t in range(1, STEPS + 1):
        g = _gradient(rng, x)
        coefficients = stream.step(t)
        cpu(x, g, state, carry, coefficients)
        cuda_backend.step(rule, d_x, cuda.to_device(g), d_state, d_carry, coefficients,
                          threads_per_block=THREADS, blocks=BLOCKS)
        _assert_same(d_x.copy_to_host(), x, f"x at step {t}", rule.name)
        _assert_same(d_state.copy_to_host(), state, f"state at step {t}", rule.name)
        _assert_same(d_carry.copy_to_host(), carry, f"carry at step {t}", rule.name)
    assert d_x.copy_to_host().dtype == dtype


@needs_cuda
def test_default_launch_covers_vectors_longer_than_the_grid():
    cuda = _cuda()
    rule = rules.RULES["adam"]
    options = rule.validate({"lr": 0.1})
    n = 10_007
    blocks = cuda_backend.launch_blocks(n, 64)
    assert 1 <= blocks <= cuda_backend.BLOCKS_PER_SM * cuda_backend._sm_count()
    x = np.linspace(-1, 1, n).astype(np.float32)
    g, state = x.copy(), np.zeros((2, n), np.float32)
    d_x, d_g, d_state = cuda.to_device(x), cuda.to_device(g), cuda.to_device(state)
    coefficients = rule.stream(options, as_schedule(0.1), x.dtype).step(1)
    carry = np.zeros(0, np.float32)
    kernels.cpu_kernel(rule, False)(x, g, state, carry, coefficients)
    cuda_backend.step(rule, d_x, d_g, d_state, cuda.to_device(carry), coefficients,
                      threads_per_block=64)
    _assert_same(d_x.copy_to_host(), x, "x")


@needs_cuda
def test_step_rejects_mismatched_device_arrays():
    cuda = _cuda()
    rule = rules.RULES["adam"]
    coefficients = rule.stream(rule.validate({}), as_schedule(1e-3), np.float32).step(1)
    x = cuda.to_device(np.zeros(8, np.float32))
    carry = cuda.to_device(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="gradient must match"):
        cuda_backend.step(rule, x, cuda.to_device(np.zeros(8)), cuda.to_device(
            np.zeros((2, 8), np.float32)), carry, coefficients)
    with pytest.raises(ValueError, match="state must be"):
        cuda_backend.step(rule, x, x, cuda.to_device(np.zeros((2, 7), np.float32)), carry,
                          coefficients)
    with pytest.raises(TypeError, match="NumPy array on the host"):
        cuda_backend.step(rule, np.zeros(8, np.float32), x, x, carry, coefficients)


# --- the fused step and the reductions of the device drivers -------------------------------------

FUSED_CASES = [("adam", {"lr": 0.1, "amsgrad": True}), ("sgd", {"lr": 0.2}),
               ("nadam", {"lr": 0.05, "weight_decay": 0.1})]


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("bounded", [False, True], ids=["unbounded", "bounded"])
@pytest.mark.parametrize("method, options", FUSED_CASES, ids=[m for m, _ in FUSED_CASES])
def test_fused_step_is_the_kernel_plus_projection_and_saves_the_previous_iterate(
        method, options, bounded, dtype):
    cuda = _cuda()
    opt = optimizer_for(method, **options)
    rule, validated = opt.rule, opt.options
    rng = np.random.default_rng(5)
    n = 37
    x = rng.normal(size=n).astype(dtype)
    state = rule.state_vectors(validated, x.size, x.dtype)
    lower = np.full(n, -0.6, dtype) if bounded else np.zeros(0, dtype)
    upper = np.linspace(0.1, 0.8, n).astype(dtype) if bounded else np.zeros(0, dtype)
    d_x, d_state, d_previous = cuda.to_device(x), cuda.to_device(state), cuda.device_array(n, dtype)
    d_point = cuda.device_array(n, dtype)
    d_lower, d_upper = cuda.to_device(lower), cuda.to_device(upper)
    carry = rule.carry_vector(validated, dtype)
    d_carry = cuda.to_device(carry)
    stream = rule.stream(validated, as_schedule(validated["lr"]), dtype)
    cpu = kernels.cpu_kernel(rule, False)
    for t in range(1, 4):
        g = _gradient(rng, x)
        c = stream.step(t)
        before = x.copy()
        cpu(x, g, state, carry, c)
        if bounded:
            x = np.minimum(np.maximum(x, lower), upper)
        cuda_backend.fused_step(rule, d_x, cuda.to_device(g), d_state, d_carry, c, d_previous,
                                d_point, d_lower, d_upper, THREADS, BLOCKS)
        _assert_same(d_x.copy_to_host(), x, f"x at step {t}", rule.name)
        _assert_same(d_state.copy_to_host(), state, f"state at step {t}", rule.name)
        assert d_previous.copy_to_host().tobytes() == before.tobytes()
        assert d_point.copy_to_host().tobytes() == d_x.copy_to_host().tobytes()
    if bounded:
        assert np.all(x >= lower) and np.all(x <= upper) and np.any(x == upper)


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32],
                         ids=["float32", "float64", "int32"])
@pytest.mark.parametrize("kind", cuda_backend.REDUCTIONS)
def test_reductions_match_numpy_over_several_blocks(kind, dtype):
    cuda = _cuda()
    rng = np.random.default_rng(6)
    x = (rng.normal(size=(7, 9)) * 10).astype(dtype)  # 2-D: reduced as its flat contiguous data
    reduce = cuda_backend.Reduction(kind, dtype, threads_per_block=4)  # 16 blocks, then 1
    value = reduce(cuda.to_device(x))
    wide = x.astype(np.float64)
    expected = {"max_abs": np.abs(wide).max(), "sum": wide.sum(),
                "sum_squares": (wide ** 2).sum()}[kind]
    if dtype is np.int32 or kind == "max_abs":
        assert value == expected and type(value) is (int if dtype is np.int32 else float)
    else:
        assert value == pytest.approx(expected, rel=1e-6 if dtype is np.float32 else 1e-14)
    assert reduce(cuda.to_device(x[:1, :3].copy())) == pytest.approx(
        {"max_abs": np.abs(wide[0, :3]).max(), "sum": wide[0, :3].sum(),
         "sum_squares": (wide[0, :3] ** 2).sum()}[kind], rel=1e-6)  # one block: one launch
    assert reduce(cuda.device_array(0, dtype)) == 0


@needs_cuda
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("position", [0, 17, 36])
def test_infinity_norm_propagates_nan_and_inf(bad, position):
    cuda = _cuda()
    x = np.linspace(-3, 2, 37)
    x[position] = bad
    norm = cuda_backend.Reduction("max_abs", np.float64, threads_per_block=4)(cuda.to_device(x))
    assert math.isnan(norm) if np.isnan(bad) else norm == np.inf


def test_reduction_arguments_are_checked():
    with pytest.raises(ValueError, match="Invalid reduction"):
        cuda_backend.Reduction("mean", np.float32)
    with pytest.raises(ValueError, match="power of two"):
        cuda_backend.Reduction("sum", np.float32, threads_per_block=6)


def test_require_available_says_how_to_get_cuda(monkeypatch):
    monkeypatch.setattr(cuda_backend, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"frobnicate needs CUDA.*NUMBA_ENABLE_CUDASIM=1"):
        cuda_backend.require_available("frobnicate")


# --- the optimizer classes ------------------------------------------------------------------------

OPTIMIZER_CASES = [
    ("adam", {"lr": 0.01, "amsgrad": True}),
    ("adagrad", {"lr": 0.1, "initial_accumulator_value": 0.1}),
    ("sgd", {"lr": 0.05}),  # no state vectors at all
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("nadam", {"lr": 0.01}),  # carries a host scalar between steps
    ("rmsprop", {"lr": 1e-3, "centered": True, "momentum": 0.5}),
]
OPTIMIZER_IDS = [f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for m, o in OPTIMIZER_CASES]


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("method, options", OPTIMIZER_CASES, ids=OPTIMIZER_IDS)
def test_cuda_optimizer_matches_cpu_and_keeps_state_on_device(method, options, dtype):
    cuda = _cuda()
    rng = np.random.default_rng(1)
    x = rng.normal(size=N).astype(dtype)
    d_x = cuda.to_device(x)
    cpu, gpu = optimizer_for(method, **options), optimizer_for(method, backend="cuda", **options)
    for _ in range(STEPS):
        g = _gradient(rng, x)
        cpu.step(x, g)
        gpu.step(d_x, cuda.to_device(g))  # d_x is updated in place
    _assert_same(d_x.copy_to_host(), x, "x")
    if cpu.state is None or cpu.state.shape[0] == 0:
        assert gpu.state is None or gpu.state.shape[0] == 0
    else:
        assert cuda_backend.is_device_array(gpu.state)
        assert gpu.state.dtype == dtype
        _assert_same(gpu.state.copy_to_host(), cpu.state, "state")

    # state_dict: host NumPy copies, equal to the CPU optimizer's; loading resumes on the device
    snapshot = gpu.state_dict()
    expected = cpu.state_dict()
    assert snapshot["step"] == expected["step"] and snapshot["scalars"] == expected["scalars"]
    assert snapshot["state"].keys() == expected["state"].keys()
    for slot, vector in snapshot["state"].items():
        assert isinstance(vector, np.ndarray)
        _assert_same(vector, expected["state"][slot], slot)
    resumed = optimizer_for(method, backend="cuda", **options)
    resumed.load_state_dict(snapshot)
    if snapshot["state"]:
        assert cuda_backend.is_device_array(resumed.state)
    d_resumed = cuda.to_device(x)
    for _ in range(3):
        g = _gradient(rng, x)
        cpu.step(x, g)
        resumed.step(d_resumed, cuda.to_device(g))
    _assert_same(d_resumed.copy_to_host(), x, "x after resuming")


@needs_cuda
def test_backend_none_follows_the_arrays():
    cuda = _cuda()
    x = np.linspace(-1, 1, N)
    d_x = cuda.to_device(x)
    opt = adamnb.Adam(lr=0.1)
    opt.step(d_x, cuda.to_device(2 * x))
    assert cuda_backend.is_device_array(opt.state)
    with pytest.raises(ValueError, match="lives on the CUDA device"):
        opt.step(x, 2 * x)
    # A snapshot loaded into a fresh optimizer stays on the host until a step with device arrays.
    host = adamnb.Adam(lr=0.1)
    host.load_state_dict(opt.state_dict())
    assert isinstance(host.state, np.ndarray)
    host.step(d_x.copy_to_host(), 2 * d_x.copy_to_host())  # resumes on the CPU
    moved = adamnb.Adam(lr=0.1)
    moved.load_state_dict(opt.state_dict())
    moved.step(d_x, cuda.to_device(2 * d_x.copy_to_host()))
    assert cuda_backend.is_device_array(moved.state)


@needs_cuda
def test_cuda_backend_wants_device_arrays_and_cpu_backends_host_arrays():
    cuda = _cuda()
    x = np.ones(4)
    with pytest.raises(TypeError, match="NumPy array on the host"):
        adamnb.Adam(backend="cuda").step(x, x)
    for backend in ("cpu", "parallel"):
        with pytest.raises(TypeError, match="CUDA device array"):
            adamnb.Adam(backend=backend).step(cuda.to_device(x), cuda.to_device(x))
    with pytest.raises(TypeError, match="float32 or float64"):
        adamnb.Adam(backend="cuda").step(cuda.to_device(np.ones(4, np.int64)),
                                         cuda.to_device(np.ones(4, np.int64)))
    with pytest.raises(ValueError, match="1-D"):
        adamnb.Adam(backend="cuda").step(cuda.to_device(np.ones((2, 2))),
                                         cuda.to_device(np.ones((2, 2))))


@needs_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_no_recompilation_after_first_step(dtype):
    cuda = _cuda()
    for method, options in CASES:
        opt = optimizer_for(method, backend="cuda", **options)
        x = cuda.to_device(np.ones(8, dtype))
        opt.step(x, cuda.to_device(np.ones(8, dtype)))
        kernel = cuda_backend.cuda_kernel(opt.rule)
        before = len(kernel.overloads)
        for t in range(5):
            opt.step(x, cuda.to_device(np.full(8, 0.1 * t, dtype)))
        assert len(kernel.overloads) == before, (method, options)


# --- the normal run: no simulator, no GPU needed --------------------------------------------------

def test_backend_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cuda_backend, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="backend='cuda' was requested but CUDA is unavailable"):
        adamnb.Adam(backend="cuda")


def test_backend_option_is_validated():
    with pytest.raises(ValueError, match="Invalid backend"):
        adamnb.SGD(backend="gpu")
    with pytest.raises(ValueError, match="pass parallel only with backend=None"):
        adamnb.SGD(backend="cpu", parallel=True)
    assert adamnb.SGD(backend="cpu").parallel is False
    assert adamnb.SGD(backend="parallel").parallel is True
    x = np.ones(3)
    adamnb.SGD(lr=0.5, backend="parallel").step(x, x.copy())
    assert np.all(x == 0.5)


def test_import_adamnb_does_not_import_numba_cuda():
    code = "import sys, adamnb; print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@functools.lru_cache(maxsize=None)
def _ptx_toolchain_missing():
    """Why PTX cannot be compiled here (None when it can): simulator on, or no NVVM/NVRTC."""
    if SIMULATOR:
        return "PTX compilation needs the real CUDA target; run without NUMBA_ENABLE_CUDASIM"
    try:
        from numba import cuda, float32

        def probe(x):
            x[0] = 1

        cuda.compile_ptx(probe, (float32[::1],), cc=(9, 0))
    except Exception as error:  # library-not-found errors differ between numba and numba-cuda
        return f"the CUDA compiler (NVVM) is unavailable: {type(error).__name__}: {error}"
    return None


F32_ARITHMETIC = re.compile(r"\b(?:add|sub|mul|fma\.rn)\.f32\b")
APPROXIMATE = re.compile(r"\b(?:div|sqrt|rsqrt|rcp)\.(?:approx|full)\b|\.ftz\b")


#: The rules with element math (Muon's matrix step runs on the host: no kernel to compile).
ELEMENT_RULES = rules.VECTOR_RULES


@pytest.mark.parametrize("rule", list(ELEMENT_RULES.values()), ids=list(ELEMENT_RULES))
def test_every_kernel_compiles_to_ptx_for_sm90_without_float64_in_float32(rule):
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    ptx32 = cuda_backend.compile_ptx_for(rule, np.float32, cc=(9, 0))
    ptx64 = cuda_backend.compile_ptx_for(rule, np.float64, cc=(9, 0))
    for ptx in (ptx32, ptx64):
        assert ".target sm_90" in ptx and ".entry" in ptx
        assert not APPROXIMATE.search(ptx), APPROXIMATE.search(ptx).group()  # no fast-math
    # float32: float32 arithmetic and not one float64 instruction (no arithmetic, no cvt.f64.f32,
    # no float64 loads or constants); a float64 literal in an element would show up here.
    assert F32_ARITHMETIC.search(ptx32)
    assert ".f64" not in ptx32, sorted(set(re.findall(r"\b[\w.]+\.f64\b", ptx32)))
    # float64 is the control: the same pattern does find the float64 kernel's arithmetic.
    assert re.search(r"\b(?:add|sub|mul|fma\.rn)\.f64\b", ptx64)


@pytest.mark.parametrize("rule", list(ELEMENT_RULES.values()), ids=list(ELEMENT_RULES))
def test_every_fused_step_compiles_to_ptx_for_sm90_without_float64_in_float32(rule):
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    ptx32 = cuda_backend.compile_ptx_for(rule, np.float32, cc=(9, 0), fused=True)
    assert ".target sm_90" in ptx32 and ".entry" in ptx32 and F32_ARITHMETIC.search(ptx32)
    assert not APPROXIMATE.search(ptx32)
    assert ".f64" not in ptx32, sorted(set(re.findall(r"\b[\w.]+\.f64\b", ptx32)))


@pytest.mark.parametrize("kind", cuda_backend.REDUCTIONS)
def test_reductions_compile_to_ptx_for_sm90_without_float64_in_float32(kind):
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    ptx32 = cuda_backend.compile_reduction_ptx(kind, np.float32, cc=(9, 0))
    assert ".target sm_90" in ptx32 and "bar.sync" in ptx32 and ".shared" in ptx32
    assert ".f64" not in ptx32
    assert re.search(r"\b(?:max|add|fma\.rn|setp\.\w+)\.f32\b", ptx32)


@elementwise
def _promoting_element(x, g, state, i, c):
    (maximize, weight_decay, momentum_now, one_minus_dampening_now, lr, use_momentum, nesterov,
     momentum) = c
    return x - 0.1 * g  # a Python float literal is a float64 constant: float32 work is promoted


def test_ptx_check_catches_a_float64_literal():
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    promoting = dataclasses.replace(rules.RULES["sgd"], element=_promoting_element)
    ptx32 = cuda_backend.compile_ptx_for(promoting, np.float32, cc=(9, 0))
    assert "cvt.f64.f32" in ptx32 and ".f64" in ptx32
