"""CUDA kernels generated from the same per-element math as the CPU kernels.

Each rule's ``element(x, g, state, i, c)`` (:mod:`adamnb.optim.rules`) is compiled as a CUDA device
function and called from one grid-stride kernel, the GPU twin of :mod:`adamnb.backends.cpu`::

    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        x[i] = element(x[i], g[i], state, i, c)

A rule with reductions inside its step (LAMB, Prodigy, Adafactor, NovoGrad) runs as four launches on
the same stream, nothing coming back to the host: the first pass (``reduce`` per element, each block
folding its threads' terms in a shared-memory tree into one partial per sum), one block folding the
partials into the sums, the element pass (every thread computes ``finish`` from the sums, the same
scalars in every thread), and, for a rule that carries scalars, one thread's ``advance``
writing the new ``carry`` once every thread has read the old one.

Nothing here restates a formula. The arrays are device arrays (numba's, or any object exporting
``__cuda_array_interface__``: CuPy arrays, CUDA torch tensors), viewed without copies; ``c`` is the
tuple of per-step scalars in x's dtype (:func:`adamnb.backends.cpu.cast_coefficients`), passed by value
with the launch. A kernel is compiled once per (rule, dtype) on its first launch; no on-disk cache.

Which CUDA target
    numba's built-in ``numba.cuda`` is deprecated in favour of NVIDIA's ``numba-cuda`` package,
    which replaces it transparently once installed (``import numba.cuda`` then loads
    ``numba_cuda``). Both work here, with one difference in how the element is compiled:

    * The element is compiled with ``cuda.jit(device=True)(rule.element)``: ``register_jitable``
      returns the undecorated Python function, so ``rule.element`` *is* the plain function, and
      this compiles the same source for the CUDA target. Calling the ``register_jitable`` function
      directly from the kernel (as the CPU kernels do) works with the built-in target but not with
      numba-cuda 0.30.4, whose own IR classes clash with the inline-always IR that numba core hands
      it (an ``AssertionError`` in its post-processing pass).
    * numba 0.68's built-in target cannot compile ``max(a, b)`` on two scalars: numba core now
      types it through a ``*args`` overload that the built-in CUDA dispatcher cannot compile
      ("Signature mismatch: 2 argument types given, but function takes 1 arguments"). For the
      built-in target only, the element is compiled with ``max``/``min`` bound to two-argument
      device functions with Python's (and numba's CPU) semantics, ``b if b > a else a``;
      numba-cuda compiles the builtins itself.

Launch configuration
    :func:`step` launches ``min(ceil(n / threads_per_block), 32 * SM count)`` blocks of
    ``threads_per_block`` (default 256) threads. Up to that cap every thread updates one element;
    beyond it the grid-stride loop gives each thread several elements, coalesced (consecutive
    threads touch consecutive elements in every pass). 32 blocks of 256 threads per SM is four
    times what an SM holds at once (at most 2048 resident threads), enough to balance the waves
    of blocks, while the cap bounds the launch for huge vectors.

For the device drivers
    :func:`cuda_fused_step` is the same element in the per-step kernel of
    :func:`adamnb.optimize._device.minimize_on_device`: it also saves the previous iterate and
    projects onto bounds, in the same pass, with the CPU drivers' per-element code
    (:mod:`adamnb.backends.elements`). :class:`Reduction` brings one scalar (the convergence
    measure, a loss, a count) back from a device array:
    a shared-memory tree per block, then one block over the partials. Two plain launches rather
    than atomics: numba has no float atomic that propagates NaN (the finiteness test needs that),
    and a fixed tree makes sums reproducible run to run.

Numerics
    The kernels are compiled without fast-math (IEEE division and square root, no flush to zero)
    and float32 kernels do all their arithmetic in float32 (``tests/test_cuda.py`` checks the PTX).
    NVVM does contract ``a * b + c`` into fused multiply-adds, which the CPU kernels do not, so on
    a GPU the results can differ from the CPU kernels in the last bits (as torch's fused CUDA
    optimizers differ from its CPU ones). In numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)
    the same Python runs on NumPy scalars and matches the CPU kernels bit for bit, except where
    Python's ``math.sqrt`` (which returns a Python float) leaves a float32 expression in float64:
    Adadelta's quotient of two square roots is then rounded once instead of twice (1-2 ulp).

``numba.cuda`` is imported only when a function here needs it, so ``import adamnb`` stays fast and
works on machines without CUDA.
"""

import contextlib
import math
import types

import numpy as np

from adamnb.backends import cpu as kernels
from adamnb.backends.elements import (fold_max, fused_update, maximum, minimum, project,
                                      stationarity)

__all__ = ["numba_cuda", "kernel_types", "device_function", "project_vector", "is_available",
           "require_available", "simulator_enabled", "is_device_array",
           "as_device_array", "check_device_vector", "to_device", "device_empty", "synchronize",
           "cuda_kernel", "cuda_fused_step", "fused_step", "launch_blocks", "step", "Reduction",
           "block_tree", "StepScratch",
           "number_of_coefficients",
           "kernel_signature", "compile_ptx_for", "compile_kernel_ptx",
           "compile_reduction_ptx", "elementwise_function", "elementwise_kernel", "launch",
           "gemm_function", "gemm"]

DEFAULT_THREADS_PER_BLOCK = 256
#: The grid is capped at this many blocks per streaming multiprocessor (see the module notes).
BLOCKS_PER_SM = 32

_FLOAT_TYPES = (np.float32, np.float64)
_kernels = {}
_sm_counts = {}
# numba.cuda once imported. The kernels reach it through this module global, never a closure: the
# simulator runs a kernel by swapping the numba.cuda module in the kernel's globals for a fake one.
_numba_cuda = None


def _cuda():
    global _numba_cuda
    if _numba_cuda is None:
        from numba import cuda
        _numba_cuda = cuda
    return _numba_cuda


def numba_cuda():
    """The ``numba.cuda`` module, imported on first use (the one accessor every CUDA module uses:
    the simulator swaps the module, so kernels must reach it at run time, not import time)."""
    return _cuda()


def kernel_types(dtype):
    """What a kernel source built for ``dtype`` closes over: ``(dtype, scalar, zero)``, the NumPy
    dtype, numba's scalar type of it (for ``cuda.shared.array``) and a zero of the dtype (an
    accumulator's start that keeps float32 work in float32). Loads ``numba.cuda``."""
    from numba import from_dtype
    _cuda()
    dtype = np.dtype(dtype)
    return dtype, from_dtype(dtype), dtype.type(0)


def simulator_enabled():
    """Whether numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1`` before numba's import)."""
    from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def is_available():
    """True when kernels can be launched: a CUDA driver and GPU, or the simulator."""
    try:
        return bool(_cuda().is_available())
    except Exception:  # a broken driver or CUDA package install is "unavailable", not a crash
        return False


def require_available(what):
    """Raise RuntimeError, saying how to get CUDA, unless kernels can be launched.

    ``what`` names the caller in the message (e.g. ``"minimize on device arrays"``).
    """
    if not is_available():
        raise RuntimeError(f"{what} needs CUDA, which is unavailable: no CUDA driver or GPU was "
                           "found (numba.cuda.is_available() is False). Install the NVIDIA driver "
                           "and numba-cuda (pip install -e \".[cuda]\"), or set "
                           "NUMBA_ENABLE_CUDASIM=1 before importing numba to use the simulator")


def is_device_array(obj):
    """Whether ``obj`` lives on a CUDA device (numba device array or ``__cuda_array_interface__``).

    Does not import ``numba.cuda``.
    """
    if isinstance(obj, np.ndarray):
        return False
    return bool(getattr(obj, "__cuda_ndarray__", False)) or \
        hasattr(obj, "__cuda_array_interface__")


def as_device_array(obj, name="array"):
    """``obj`` as a numba device array, without copying.

    Accepts numba device arrays (returned as they are) and any object exporting
    ``__cuda_array_interface__`` (CuPy arrays, CUDA torch tensors; viewed with
    ``numba.cuda.as_cuda_array``). Host arrays raise TypeError: the CUDA backend never copies
    parameters or gradients between host and device behind the caller's back.
    """
    if getattr(obj, "__cuda_ndarray__", False):
        return obj
    if hasattr(obj, "__cuda_array_interface__"):
        cuda = _cuda()
        if not hasattr(cuda, "as_cuda_array"):
            raise TypeError(f"{name}: numba's CUDA simulator cannot view objects exporting "
                            "__cuda_array_interface__; pass numba.cuda.to_device arrays")
        return cuda.as_cuda_array(obj)
    if isinstance(obj, np.ndarray):
        raise TypeError(f"{name} is a NumPy array on the host; the CUDA backend updates device "
                        "arrays in place and never copies: pass numba.cuda.to_device(array), a "
                        "CuPy array or a CUDA torch tensor")
    raise TypeError(f"{name} must be a CUDA device array (numba device array or an object with "
                    f"__cuda_array_interface__), got {type(obj).__name__}")


def check_device_vector(x, name="x"):
    """``x`` as a device array; TypeError/ValueError unless it is a contiguous 1-D float vector."""
    x = as_device_array(x, name)
    if np.dtype(x.dtype).type not in _FLOAT_TYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if len(x.shape) != 1:
        hint = "" if name == "x0" else " (a view such as x.reshape(-1) is updated in place)"
        raise ValueError(f"{name} must be a flat 1-D array, got shape {tuple(x.shape)}; flatten "
                         f"it{hint}")
    if not x.is_c_contiguous():
        raise ValueError(f"{name} must be contiguous")
    return x


def to_device(array):
    """Copy a host array to the device (used once, for new or loaded optimizer state)."""
    return _cuda().to_device(np.ascontiguousarray(array))


def device_empty(shape, dtype):
    """A new, uninitialised device array."""
    return _cuda().device_array(shape, dtype)


def synchronize():
    """Wait until the device has finished all work launched so far."""
    _cuda().synchronize()


# --- kernels --------------------------------------------------------------------------------------

def _maximum(a, b):
    return b if b > a else a


def _minimum(a, b):
    return b if b < a else a


def _builtin_target_needs_minmax():
    return getattr(_cuda(), "implementation", None) == "Built-in" and not simulator_enabled()


_device_functions = {}


def device_function(function, **names):
    """``function`` (a plain Python function, e.g. a rule's element or one of
    :mod:`adamnb.backends.elements`) compiled as a CUDA device function.

    ``names`` rebinds global names the function calls to their device versions (an element of
    :mod:`adamnb.backends.elements` calling another). For numba's built-in CUDA target, ``max``
    and ``min`` are rebound to two-argument device functions with Python's semantics (see the
    module notes). Compiled once per function.
    """
    key = (function, tuple(sorted(names)))
    if key not in _device_functions:
        cuda = _cuda()
        replacements = dict(names)
        for helper in (maximum, minimum):
            if helper.__name__ in function.__code__.co_names and function is not helper:
                # An element calling adamnb.backends.elements.maximum or minimum calls its device
                # version: numba-cuda cannot call a register_jitable function (module notes).
                replacements.setdefault(helper.__name__, device_function(helper))
        if _builtin_target_needs_minmax():
            replacements.update(max=cuda.jit(device=True)(_maximum),
                                min=cuda.jit(device=True)(_minimum))
        if replacements:
            function = types.FunctionType(function.__code__,
                                          {**function.__globals__, **replacements},
                                          function.__name__, function.__defaults__,
                                          function.__closure__)
        _device_functions[key] = cuda.jit(device=True)(function)
    return _device_functions[key]


def _device_update(element):
    """:func:`adamnb.backends.elements.fused_update` of ``element``, as a device function."""
    key = ("update", element)
    if key not in _device_functions:
        _device_functions[key] = _cuda().jit(device=True)(
            fused_update(device_function(element), device_function(project)))
    return _device_functions[key]


def _quiet(element):
    """``element`` with NumPy's overflow warnings off: the simulator runs elements on NumPy
    scalars, whose wrapping uint64 multiplications (intended: the counter-based random numbers
    of :mod:`adamnb.backends.random` work modulo 2**64) would each warn."""
    def quiet(*args):
        with np.errstate(over="ignore"):
            return element(*args)
    return quiet


def _element_loops(element):
    """The grid-stride loops around ``element`` as device functions, shared by the kernels of
    the rules with and without reductions: ``(plain(x, g, state, c), fused(x, g, state, c,
    previous, point, lower, upper))``, the second as :func:`cuda_fused_step` describes."""
    key = ("loops", element)
    if key not in _device_functions:
        device = _cuda().jit(device=True)
        device_element, update = device_function(element), _device_update(element)

        def plain(x, g, state, c):
            for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
                x[i] = device_element(x[i], g[i], state, i, c)

        def fused(x, g, state, c, previous, point, lower, upper):
            bounded = lower.size > 0
            for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
                value = update(x, g, state, i, c, previous, lower, upper, bounded)
                x[i] = value
                point[i] = value

        _device_functions[key] = (device(plain), device(fused))
    return _device_functions[key]


def _kernel_function(element):
    """The Python source of the grid-stride kernel around ``element``, not yet compiled."""
    plain, _ = _element_loops(element)

    def kernel(x, g, state, carry, c):
        plain(x, g, state, c)

    return kernel


def cuda_kernel(rule):
    """The CUDA kernel ``kernel[blocks, threads](x, g, state, carry, c)`` of a rule without
    reductions."""
    if rule.element not in _kernels:
        _kernels[rule.element] = _cuda().jit(_kernel_function(rule.element))
    return _kernels[rule.element]


def _fused_step_function(element):
    """The Python source of the fused step around ``element`` (see :func:`cuda_fused_step`)."""
    _, fused = _element_loops(element)

    def fused_step(x, g, state, carry, c, previous, point, lower, upper):
        fused(x, g, state, c, previous, point, lower, upper)

    return fused_step


def cuda_fused_step(rule):
    """The kernel ``fused[blocks, threads](x, g, state, carry, c, previous, point, lower, upper)``
    of a rule without reductions (:func:`fused_step` launches any rule's).

    The device driver's step: :func:`adamnb.backends.elements.fused_update` per element, as the
    CPU drivers' kernels do (``previous[:] = x``, the rule's update, the projection onto
    ``[lower, upper]`` when ``lower`` is not empty), and the new iterate written to ``point``
    too, the copy the objective is evaluated at.
    """
    key = ("fused", rule.element)
    if key not in _kernels:
        _kernels[key] = _cuda().jit(_fused_step_function(rule.element))
    return _kernels[key]


# --- rules with reductions inside the step ---------------------------------------------------------

def _first_pass_function(rule, threads_per_block, dtype):
    """The Python source of a reduction rule's first pass: ``reduce`` per element (updating the
    state), each block's sums written to ``out[blockIdx.x, :]``."""
    from numba import from_dtype
    _cuda()
    dtype = np.dtype(dtype)
    scalar, zero, width = from_dtype(dtype), dtype.type(0), int(threads_per_block)
    terms = len(rule.reductions)
    reduce_element = device_function(rule.reduce)
    tree = block_tree(width, False)

    def first_pass(x, g, state, carry, c, out):
        buffer = _numba_cuda.shared.array(width, scalar)
        acc = _numba_cuda.local.array(terms, scalar)
        tid = _numba_cuda.threadIdx.x
        for j in range(terms):
            acc[j] = zero
        for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
            values = reduce_element(x[i], g[i], state, i, carry, c)
            for j in range(terms):
                acc[j] += values[j]
        for j in range(terms):
            buffer[tid] = acc[j]
            tree(buffer, tid)
            if tid == 0:
                out[_numba_cuda.blockIdx.x, j] = buffer[0]

    return first_pass


def _combine_function(terms, threads_per_block, dtype):
    """The Python source of the one-block fold of the first pass's partials (blocks, terms) into
    ``sums`` (terms + 1: the sums, then the number of elements, ``size``)."""
    from numba import from_dtype
    _cuda()
    dtype = np.dtype(dtype)
    scalar, zero, width = from_dtype(dtype), dtype.type(0), int(threads_per_block)
    tree = block_tree(width, False)

    def combine(partials, sums, size):
        buffer = _numba_cuda.shared.array(width, scalar)
        tid = _numba_cuda.threadIdx.x
        if tid == 0:
            sums[terms] = size
        for j in range(terms):
            acc = zero
            for block in range(tid, partials.shape[0], width):
                acc += partials[block, j]
            buffer[tid] = acc
            tree(buffer, tid)
            if tid == 0:
                sums[j] = buffer[0]

    return combine


def _second_pass_function(rule, fused):
    """The Python source of a reduction rule's element pass: every thread computes the step's
    scalars, ``c`` and ``finish(sums, carry, c)``, then its elements (fused: as
    :func:`cuda_fused_step` does)."""
    finish = device_function(rule.finish)
    plain, fused_loop = _element_loops(rule.element)
    if not fused:
        def second_pass(x, g, state, carry, c, sums):
            plain(x, g, state, c + finish(sums, carry, c))

        return second_pass

    def fused_second_pass(x, g, state, carry, c, sums, previous, point, lower, upper):
        fused_loop(x, g, state, c + finish(sums, carry, c), previous, point, lower, upper)

    return fused_second_pass


def _advance_function(rule):
    """The Python source of the one-thread kernel writing a rule's new carried scalars."""
    _cuda()
    advance = device_function(rule.advance)

    def advance_carry(sums, carry, c):
        if _numba_cuda.grid(1) == 0:
            carried = advance(sums, carry, c)
            for j in range(carry.size):
                carry[j] = carried[j]

    return advance_carry


def _reduction_kernels(rule, threads_per_block, dtype, fused):
    key = ("reduction", *rule.compiled, int(threads_per_block), np.dtype(dtype),
           bool(fused))
    if key not in _kernels:
        jit = _cuda().jit
        _kernels[key] = (
            jit(_first_pass_function(rule, threads_per_block, dtype)),
            jit(_combine_function(len(rule.reductions), threads_per_block, dtype)),
            jit(_second_pass_function(rule, fused)),
            jit(_advance_function(rule)) if rule.advance is not None else None)
    return _kernels[key]


class StepScratch:
    """The device buffers of a reduction rule's step (the blocks' partials and the sums),
    allocated once and reused step after step."""

    def __init__(self):
        self._buffers = {}

    def get(self, blocks, terms, dtype):
        key = (blocks, terms, np.dtype(dtype))
        if key not in self._buffers:
            cuda = _cuda()
            self._buffers[key] = (cuda.device_array((blocks, terms), dtype),
                                  cuda.device_array(terms + 1, dtype))
        return self._buffers[key]


def _launch_reduction_step(rule, x, g, state, carry, c, blocks, threads_per_block, stream,
                           scratch, fused_arguments=None):
    first, combine, second, advance = _reduction_kernels(
        rule, threads_per_block, x.dtype, fused_arguments is not None)
    partials, sums = (scratch or StepScratch()).get(blocks, len(rule.reductions), x.dtype)
    first[blocks, threads_per_block, stream](x, g, state, carry, c, partials)
    combine[1, threads_per_block, stream](partials, sums, x.size)
    arguments = (x, g, state, carry, c, sums) + tuple(fused_arguments or ())
    second[blocks, threads_per_block, stream](*arguments)
    if advance is not None:
        advance[1, 1, stream](sums, carry, c)


def fused_step(rule, x, g, state, carry, coefficients, previous, point, lower, upper,
               threads_per_block=DEFAULT_THREADS_PER_BLOCK, blocks=None, stream=0,
               scratch=None):
    """The device driver's step of ``rule`` on device vectors: :func:`cuda_fused_step`'s one
    pass for a rule without reductions, the launches of the module notes (the element pass
    fused likewise) for a rule with them. ``scratch`` (a :class:`StepScratch`) keeps the
    reduction's buffers from step to step. Returns without waiting."""
    if blocks is None:
        blocks = launch_blocks(x.size, threads_per_block)
    c = kernels.cast_coefficients(coefficients, x.dtype)
    if not rule.reductions:
        cuda_fused_step(rule)[blocks, threads_per_block, stream](x, g, state, carry, c, previous,
                                                                 point, lower, upper)
        return
    _launch_reduction_step(rule, x, g, state, carry, c, blocks, threads_per_block, stream,
                           scratch, (previous, point, lower, upper))


def _project_function():
    _cuda()
    device_project = device_function(project)

    def project_kernel(x, lower, upper):
        for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
            x[i] = device_project(x[i], lower[i], upper[i])

    return project_kernel


def project_vector(x, lower, upper, threads_per_block=DEFAULT_THREADS_PER_BLOCK):
    """Project the device vector ``x`` onto ``[lower, upper]`` in place (on the GPU)."""
    if "project" not in _kernels:
        _kernels["project"] = _cuda().jit(_project_function())
    blocks = launch_blocks(x.size, threads_per_block)
    _kernels["project"][blocks, threads_per_block](x, lower, upper)


def _sm_count():
    device = _cuda().current_context().device
    key = getattr(device, "id", 0)
    if key not in _sm_counts:
        # The simulator's fake device has no attributes beyond its compute capability.
        _sm_counts[key] = int(getattr(device, "MULTIPROCESSOR_COUNT", 1))
    return _sm_counts[key]


def launch_blocks(n, threads_per_block=DEFAULT_THREADS_PER_BLOCK):
    """Blocks for ``n`` elements: ``min(ceil(n / threads), 32 * SM count)``, at least 1."""
    return max(1, min(math.ceil(n / threads_per_block), BLOCKS_PER_SM * _sm_count()))


def step(rule, x, g, state, carry, coefficients, threads_per_block=None, blocks=None, stream=0,
         scratch=None):
    """Apply one update of ``rule`` to the device vector ``x`` in place, on the GPU.

    Parameters
    ----------
    rule : adamnb.optim.rules.UpdateRule
    x, g : device vectors (see :func:`as_device_array`), contiguous, 1-D, float32 or float64,
        same length and dtype. ``x`` is overwritten.
    state : device array of shape ``(rule.rows(options), x.size)`` and x's dtype, the rule's
        state vectors (shape ``(0, n)`` when the configuration keeps none), updated in place. The
        caller guarantees the row count; the kernel does not check bounds.
    carry : device array of x's dtype, the rule's carried scalars (length ``rule.n_carried``,
        possibly 0), updated in place.
    coefficients : the step's scalars (:meth:`adamnb.optim.CoefficientStream.step`); cast to
        x's dtype here.
    threads_per_block : int, optional
        Default :data:`DEFAULT_THREADS_PER_BLOCK` (256), read at the call (tests lower it).
    blocks : int, optional
        Grid size; by default :func:`launch_blocks`. Any positive value is correct (the kernel
        strides over the whole vector); tests use tiny grids to exercise the stride.
    stream : numba stream or 0
        The stream to launch on; 0 is the default stream. The call returns without waiting.
    scratch : StepScratch, optional
        Device buffers for a rule with reductions, reused from call to call.
    """
    x = check_device_vector(x, "x")
    g = check_device_vector(g, "g")
    state = as_device_array(state, "state")
    if g.shape != x.shape or g.dtype != x.dtype:
        raise ValueError(f"gradient must match x: x is {x.dtype}{list(x.shape)}, "
                         f"g is {g.dtype}{list(g.shape)}")
    if len(state.shape) != 2 or state.shape[1] != x.size or state.dtype != x.dtype \
            or not state.is_c_contiguous():
        raise ValueError(f"state must be a contiguous {x.dtype} array of shape (rows, {x.size}), "
                         f"got {state.dtype}{list(state.shape)}")
    if threads_per_block is None:
        threads_per_block = DEFAULT_THREADS_PER_BLOCK
    if not (isinstance(threads_per_block, (int, np.integer)) and 1 <= threads_per_block <= 1024):
        raise ValueError(f"Invalid threads_per_block: {threads_per_block!r}; expected 1..1024")
    if x.size == 0:
        return
    if blocks is None:
        blocks = launch_blocks(x.size, threads_per_block)
    elif not (isinstance(blocks, (int, np.integer)) and blocks >= 1):
        raise ValueError(f"Invalid blocks: {blocks!r}; expected a positive integer")
    c = kernels.cast_coefficients(coefficients, x.dtype)
    carry = as_device_array(carry, "carry")
    if rule.reductions:
        _launch_reduction_step(rule, x, g, state, carry, c, int(blocks), int(threads_per_block),
                               stream, scratch)
        return
    cuda_kernel(rule)[int(blocks), int(threads_per_block), stream](x, g, state, carry, c)


# --- reductions -----------------------------------------------------------------------------------

#: What a :class:`Reduction` computes.
REDUCTIONS = ("max_abs", "sum", "sum_squares")
_reductions = {}


def block_tree(width, maximum):
    """A device function folding a block's ``buffer[0:width]`` into ``buffer[0]`` (a shared-memory
    tree, halving ``width``, a power of two): NaN-propagating max (:func:`fold_max`) or sum.

    Every thread of the block calls ``tree(buffer, threadIdx.x)`` once its value is in
    ``buffer[threadIdx.x]``; ``buffer[0]`` holds the result when it returns, until thread 0
    writes it again (the tree begins with a barrier, so a kernel may fold again at once).
    """
    fold = device_function(fold_max)

    def tree(buffer, tid):
        _numba_cuda.syncthreads()
        half = width // 2
        while half > 0:
            if tid < half:
                if maximum:
                    buffer[tid] = fold(buffer[tid], buffer[tid + half])
                else:
                    buffer[tid] += buffer[tid + half]
            _numba_cuda.syncthreads()
            half //= 2

    return _cuda().jit(device=True)(tree)


def _reduction_function(kind, threads_per_block, dtype):
    """The Python source of one pass of a block reduction, not yet compiled.

    Each block folds its grid-stride share of ``x`` into one value per thread, then halves the
    block in shared memory (:func:`block_tree`) and writes one value per block to
    ``out[blockIdx.x]``. The second pass is the same kernel on those partials with one block.
    ``max_abs`` is NaN-propagating (:func:`adamnb.backends.elements.fold_max`): a NaN anywhere
    makes the result NaN, so one test ``isfinite(norm)`` catches every non-finite entry.
    """
    dtype, scalar, zero = kernel_types(dtype)
    maximum = kind == "max_abs"
    squares = kind == "sum_squares"
    width = int(threads_per_block)
    fold = device_function(fold_max)
    tree = block_tree(width, maximum)

    def reduce_pass(x, out):
        buffer = _numba_cuda.shared.array(width, scalar)
        tid = _numba_cuda.threadIdx.x
        acc = zero
        for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
            v = x[i]
            if maximum:
                acc = fold(acc, abs(v))
            elif squares:
                acc += v * v
            else:
                acc += v
        buffer[tid] = acc
        tree(buffer, tid)
        if tid == 0:
            out[_numba_cuda.blockIdx.x] = buffer[0]

    return reduce_pass


def _stationarity_function(threads_per_block, dtype):
    """The Python source of the first pass of :meth:`Reduction.stationarity`: each thread copies
    its share of ``g`` into ``copy`` and folds :func:`adamnb.backends.elements.stationarity`."""
    dtype, scalar, zero = kernel_types(dtype)
    width = int(threads_per_block)
    fold = device_function(fold_max)
    measure = device_function(stationarity, project=device_function(project))
    tree = block_tree(width, True)

    def stationarity_pass(x, g, lower, upper, copy, out):
        buffer = _numba_cuda.shared.array(width, scalar)
        tid = _numba_cuda.threadIdx.x
        bounded = lower.size > 0
        acc = zero
        for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
            gi = g[i]
            copy[i] = gi
            if bounded:
                acc = fold(acc, measure(x[i], gi, lower[i], upper[i], True))
            else:
                acc = fold(acc, measure(x[i], gi, gi, gi, False))
        buffer[tid] = acc
        tree(buffer, tid)
        if tid == 0:
            out[_numba_cuda.blockIdx.x] = buffer[0]

    return stationarity_pass


def _reduction_kernel(kind, threads_per_block, dtype):
    key = (kind, int(threads_per_block), np.dtype(dtype))
    if key not in _reductions:
        build = _stationarity_function if kind == "stationarity" else \
            lambda tpb, dt: _reduction_function(kind, tpb, dt)
        _reductions[key] = _cuda().jit(build(int(threads_per_block), np.dtype(dtype)))
    return _reductions[key]


class Reduction:
    """One scalar from a device array, reduced on the device: only the scalar comes back.

    ``Reduction("max_abs", np.float32)(g)`` is the infinity-norm of ``g`` (NaN if ``g`` holds a
    NaN, inf if it holds an inf), ``"sum"`` the sum and ``"sum_squares"`` the sum of squares, in
    the array's dtype (integers too, for counts); :meth:`stationarity` is the drivers'
    convergence measure. Two launches: ``min(ceil(n / threads), 32 * SM count)`` blocks write one
    partial each, then one block reduces the partials (one launch when a single block covers the
    array). The summation order is fixed by the launch configuration, so a result is
    reproducible. The partial and result buffers are allocated once per object; reading the
    result back synchronises with the stream.

    Parameters
    ----------
    kind : {"max_abs", "sum", "sum_squares"}
    dtype : numpy dtype of the arrays to reduce
    threads_per_block : int, default 256
        A power of two (the shared-memory tree halves it).

    Raises
    ------
    ValueError
        An unknown kind, or threads_per_block not a power of two in 1..1024.
    """

    def __init__(self, kind, dtype, threads_per_block=DEFAULT_THREADS_PER_BLOCK):
        if kind not in REDUCTIONS:
            raise ValueError(f"Invalid reduction: {kind!r}; expected one of {REDUCTIONS}")
        tpb = threads_per_block
        if not (isinstance(tpb, (int, np.integer)) and 1 <= tpb <= 1024 and tpb & (tpb - 1) == 0):
            raise ValueError(f"Invalid threads_per_block: {tpb!r}; expected a power of two in "
                             "1..1024")
        self.kind, self.dtype, self.threads_per_block = kind, np.dtype(dtype), int(tpb)
        self._partials = self._result = None

    def _launch(self, first_kind, size, arguments, stream):
        """The first pass of ``first_kind`` over ``size`` elements, then the partials' pass."""
        cuda = _cuda()
        tpb = self.threads_per_block
        if self._partials is None:
            self._partials = cuda.device_array(BLOCKS_PER_SM * _sm_count(), self.dtype)
            self._result = cuda.device_array(1, self.dtype)
        blocks = min(launch_blocks(size, tpb), self._partials.size)
        first = _reduction_kernel(first_kind, tpb, self.dtype)
        if blocks == 1:  # one block already gives the result
            first[1, tpb, stream](*arguments, self._result)
        else:
            partials = self._partials[:blocks]
            first[blocks, tpb, stream](*arguments, partials)
            final = "sum" if self.kind in ("sum", "sum_squares") else "max_abs"
            _reduction_kernel(final, tpb, self.dtype)[1, tpb, stream](partials, self._result)
        value = self._result.copy_to_host(stream=stream)
        if stream:
            stream.synchronize()
        return value[0].item()

    def __call__(self, x, stream=0):
        """The reduction of the contiguous device array ``x`` (any shape), as a Python scalar.

        Raises
        ------
        TypeError
            ``x`` is not a device array.
        ValueError
            ``x`` is not contiguous or not of this reduction's dtype.
        """
        x = as_device_array(x, "array to reduce")
        if x.dtype != self.dtype:
            raise ValueError(f"this Reduction is for {self.dtype} arrays, got {x.dtype}")
        if not x.is_c_contiguous():
            raise ValueError("the array to reduce must be contiguous")
        if x.size == 0:
            return self.dtype.type(0).item()
        return self._launch(self.kind, x.size, (x.reshape(x.size),), stream)

    def stationarity(self, x, g, lower, upper, copy, stream=0):
        """The drivers' convergence measure at the device vector ``x`` with gradient ``g``, as a
        Python float: ``max_i |g_i|``, or with bounds (``lower`` not empty) the projected
        gradient's ``max_i |P(x_i - g_i) - x_i|``; NaN when any ``g_i`` is not finite. In the
        same pass ``g`` is copied into ``copy`` (the driver's own gradient buffer). Needs a
        ``"max_abs"`` Reduction of x's dtype."""
        if self.kind != "max_abs":
            raise ValueError("stationarity needs a 'max_abs' Reduction")
        return self._launch("stationarity", x.size, (x, g, lower, upper, copy), stream)


# --- ahead-of-time compilation (no GPU needed) ----------------------------------------------------

def number_of_coefficients(rule):
    """How many per-step scalars the rule's element takes (the length of ``c``)."""
    return rule.n_coefficients


def kernel_signature(rule, dtype):
    """The kernel's argument types for ``dtype``: (x, g, state, carry, c) as numba types."""
    from numba import from_dtype
    from numba import types as nbtypes
    if np.dtype(dtype).type not in _FLOAT_TYPES:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    scalar = from_dtype(np.dtype(dtype))
    return (scalar[::1], scalar[::1], scalar[:, ::1], scalar[::1],
            nbtypes.UniTuple(scalar, number_of_coefficients(rule)))


@contextlib.contextmanager
def _compile_for(cc):
    """Let device functions compile for ``cc`` without a GPU.

    When a kernel calls a device function, numba (built-in and numba-cuda alike) compiles that
    function for ``get_current_device().compute_capability`` while typing the call, which needs a
    driver even inside ``compile_ptx``. This stands in a device of the requested capability for
    the duration of one compilation, under numba's compiler lock.
    """
    try:  # numba-cuda has its own compiler lock
        from numba.cuda.core.compiler_lock import global_compiler_lock
    except ImportError:
        from numba.core.compiler_lock import global_compiler_lock
    from numba.cuda import dispatcher
    with global_compiler_lock:
        saved = getattr(dispatcher, "get_current_device", None)
        if saved is not None:
            dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)
        try:
            yield
        finally:
            if saved is not None:
                dispatcher.get_current_device = saved


def compile_kernel_ptx(function, signature, cc=(9, 0)):
    """The PTX of a kernel's Python source for argument types ``signature``, as text.

    ``function`` is the plain Python function of a kernel (the ``*_function`` builders here and
    in the other CUDA modules return them). Needs the CUDA compiler (NVVM) but no GPU or
    driver; not available in the simulator.
    """
    if simulator_enabled():
        raise RuntimeError("PTX compilation needs the real CUDA target; it does not work with "
                           "NUMBA_ENABLE_CUDASIM=1")
    cuda = _cuda()
    with _compile_for(tuple(cc)):
        ptx, _ = cuda.compile_ptx(function, signature, cc=tuple(cc))
    return ptx


def compile_ptx_for(rule, dtype, cc=(9, 0), fused=False):
    """The PTX of ``rule``'s kernel (or, with ``fused``, its fused step) for ``dtype`` and
    compute capability ``cc``, as text.

    Needs the CUDA compiler (NVVM) but no GPU or driver; not available in the simulator.
    """
    if simulator_enabled():
        raise RuntimeError("compile_ptx_for needs the real CUDA target; it does not work with "
                           "NUMBA_ENABLE_CUDASIM=1")
    signature = kernel_signature(rule, dtype)
    vector = signature[0]
    fused_tail = (vector, vector, vector, vector) if fused else ()
    if not rule.reductions:
        function = (_fused_step_function if fused else _kernel_function)(rule.element)
        return compile_kernel_ptx(function, signature + fused_tail, cc)
    # A rule with reductions: the PTX of each of its launches, one after the other.
    from numba import from_dtype
    from numba.core.types import intp
    matrix = from_dtype(np.dtype(dtype))[:, ::1]
    sources = [(_first_pass_function(rule, DEFAULT_THREADS_PER_BLOCK, dtype), signature + (matrix,)),
               (_combine_function(len(rule.reductions), DEFAULT_THREADS_PER_BLOCK, dtype),
                (matrix, vector, intp)),
               (_second_pass_function(rule, fused), signature + (vector,) + fused_tail)]
    if rule.advance is not None:
        sources.append((_advance_function(rule), (vector, vector, signature[-1])))
    return "\n".join(compile_kernel_ptx(function, types, cc) for function, types in sources)


def compile_reduction_ptx(kind, dtype, threads_per_block=DEFAULT_THREADS_PER_BLOCK, cc=(9, 0)):
    """The PTX of one :class:`Reduction` pass (``kind`` one of :data:`REDUCTIONS` or
    ``"stationarity"``) for ``dtype`` (no GPU needed)."""
    from numba import from_dtype
    vector = from_dtype(np.dtype(dtype))[::1]
    if kind == "stationarity":
        return compile_kernel_ptx(_stationarity_function(threads_per_block, dtype), (vector,) * 6,
                                  cc)
    return compile_kernel_ptx(_reduction_function(kind, threads_per_block, dtype),
                              (vector, vector), cc)


# --- element loops and matrix products (for adamnb.nn) ---------------------------------------------

#: Grid-stride loops around an element, by loop dimensions; ``{args}`` is the element's arguments
#: after its indices. A 2-D element gets ``r, j`` from the flat index ``i = r * cols + j``.
_ELEMENT_LOOPS = {
    1: ("def kernel(n, {args}):\n"
        "    for i in range(_numba_cuda.grid(1), n, _numba_cuda.gridsize(1)):\n"
        "        device_element(i, {args})\n"),
    2: ("def kernel(rows, cols, {args}):\n"
        "    for i in range(_numba_cuda.grid(1), rows * cols, _numba_cuda.gridsize(1)):\n"
        "        r = i // cols\n"
        "        device_element(r, i - r * cols, {args})\n"),
}


def elementwise_function(element, dimensions, arity):
    """The Python source of the grid-stride kernel around ``element``, not yet compiled.

    ``element(i, a0, ..., a{arity-1})`` (1-D) or ``element(r, j, a0, ...)`` (2-D) is a plain
    function marked with :func:`adamnb.backends.jit.elementwise`, compiled here as a device function
    (as the update rules' elements are); the kernel is ``kernel(n, a0, ...)`` or ``kernel(rows,
    cols, a0, ...)``. The loop is written out for the element's arity (numba's CUDA target cannot
    forward ``*args``) and executed with this module's globals, so that the simulator can swap
    the ``numba.cuda`` module the loop reads.
    """
    _cuda()
    names = ", ".join(f"a{k}" for k in range(arity))
    device_element = device_function(_quiet(element) if simulator_enabled() else element)
    namespace = {}
    exec(_ELEMENT_LOOPS[dimensions].format(args=names),  # noqa: S102 (a fixed template)
         {**globals(), "device_element": device_element}, namespace)
    return namespace["kernel"]


def elementwise_kernel(element, dimensions, arity):
    """The compiled grid-stride kernel around ``element`` (see :func:`elementwise_function`)."""
    key = ("element", element, dimensions, arity)
    if key not in _kernels:
        _kernels[key] = _cuda().jit(elementwise_function(element, dimensions, arity))
    return _kernels[key]


def launch(kernel, items, threads_per_block, *args, stream=0):
    """Launch a grid-stride ``kernel`` over ``items`` items with :func:`launch_blocks` blocks."""
    if items == 0:
        return
    kernel[launch_blocks(items, threads_per_block), threads_per_block, stream](*args)


def _load_tile(S, X, a0, b0, transposed, zero):
    """One thread's share of loading a tile: ``X[a0 + ty, b0 + tx]`` (consecutive threads read
    consecutive elements of X's rows: coalesced) into ``S[ty, tx]``, or ``S[tx, ty]`` when
    ``transposed``; zero outside X."""
    tx = _numba_cuda.threadIdx.x
    ty = _numba_cuda.threadIdx.y
    a = a0 + ty
    b = b0 + tx
    value = X[a, b] if a < X.shape[0] and b < X.shape[1] else zero
    if transposed:
        S[tx, ty] = value
    else:
        S[ty, tx] = value


def gemm_function(trans_a, trans_b, tile, dtype):
    """The Python source of ``C = op(A) @ op(B)``, ``op`` the transpose when ``trans_a`` /
    ``trans_b``: a tiled shared-memory product, not yet compiled.

    A block of ``tile x tile`` threads loads one tile of each operand into shared memory, always
    reading global memory along its contiguous axis (consecutive ``threadIdx.x``: coalesced) and,
    for a transposed operand, storing the tile transposed; the tiles are padded to ``tile + 1``
    columns so that the transposed stores do not conflict on memory banks. Each thread computes
    one element of ``C``, summing over ``k`` in order; ``C``'s tiles are visited grid-stride, so
    any size works with any grid. The textbook GEMM, not cuBLAS: simple, exact in its summation
    order, without a dependency (large layers would call cuBLAS, e.g. through CuPy, instead).
    """
    from numba import from_dtype
    _cuda()
    scalar = from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)
    T = int(tile)
    padded = (T, T + 1)
    load = device_function(_load_tile)

    def gemm(A, B, C):
        As = _numba_cuda.shared.array(padded, scalar)  # As[i, p] = op(A)[row0 + i, p0 + p]
        Bs = _numba_cuda.shared.array(padded, scalar)  # Bs[p, j] = op(B)[p0 + p, col0 + j]
        tx = _numba_cuda.threadIdx.x
        ty = _numba_cuda.threadIdx.y
        M, N = C.shape
        K = A.shape[0] if trans_a else A.shape[1]
        for tm in range(_numba_cuda.blockIdx.y, (M + T - 1) // T, _numba_cuda.gridDim.y):
            for tn in range(_numba_cuda.blockIdx.x, (N + T - 1) // T, _numba_cuda.gridDim.x):
                row0 = tm * T
                col0 = tn * T
                acc = zero
                for p0 in range(0, K, T):
                    if trans_a:  # A is (K, M): read along its rows, store transposed
                        load(As, A, p0, row0, True, zero)
                    else:
                        load(As, A, row0, p0, False, zero)
                    if trans_b:  # B is (N, K)
                        load(Bs, B, col0, p0, True, zero)
                    else:
                        load(Bs, B, p0, col0, False, zero)
                    _numba_cuda.syncthreads()
                    for q in range(T):
                        acc += As[ty, q] * Bs[q, tx]
                    _numba_cuda.syncthreads()
                i = row0 + ty
                j = col0 + tx
                if i < M and j < N:
                    C[i, j] = acc

    return gemm


def gemm(A, B, C, trans_a=False, trans_b=False, tile=16):
    """``C = op(A) @ op(B)`` on device arrays (see :func:`gemm_function`); returns without
    waiting."""
    M, N = C.shape
    if M == 0 or N == 0:
        return
    key = ("gemm", bool(trans_a), bool(trans_b), int(tile), np.dtype(C.dtype))
    if key not in _kernels:
        _kernels[key] = _cuda().jit(gemm_function(*key[1:]))
    blocks = (min(-(-N // tile), 65535), min(-(-M // tile), 65535))
    _kernels[key][blocks, (tile, tile)](A, B, C)
