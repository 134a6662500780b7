"""CUDA kernels generated from the same per-element math as the CPU kernels.

Each rule's ``element(x, g, state, i, c)`` (:mod:`adamnb.rules`) is compiled as a CUDA device
function and called from one grid-stride kernel, the GPU twin of :mod:`adamnb.kernels`::

    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        x[i] = element(x[i], g[i], state, i, c)

Nothing here restates a formula. The arrays are device arrays (numba's, or any object exporting
``__cuda_array_interface__``: CuPy arrays, CUDA torch tensors), viewed without copies; ``c`` is the
tuple of per-step scalars in x's dtype (:func:`adamnb.kernels.cast_coefficients`), passed by value
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

from adamnb import kernels

__all__ = ["is_available", "simulator_enabled", "is_device_array", "as_device_array",
           "check_device_vector", "to_device", "cuda_kernel", "launch_blocks", "step",
           "number_of_coefficients", "kernel_signature", "compile_ptx_for"]

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
        raise ValueError(f"{name} must be a flat 1-D array, got shape {tuple(x.shape)}; flatten "
                         "it (a view such as x.reshape(-1) is updated in place)")
    if not x.is_c_contiguous():
        raise ValueError(f"{name} must be contiguous")
    return x


def to_device(array):
    """Copy a host array to the device (used once, for new or loaded optimizer state)."""
    return _cuda().to_device(np.ascontiguousarray(array))


# --- kernels --------------------------------------------------------------------------------------

def _maximum(a, b):
    return b if b > a else a


def _minimum(a, b):
    return b if b < a else a


def _builtin_target_needs_minmax():
    return getattr(_cuda(), "implementation", None) == "Built-in" and not simulator_enabled()


def _device_element(element):
    """The rule's element compiled as a CUDA device function (see the module notes)."""
    cuda = _cuda()
    if _builtin_target_needs_minmax():
        names = {"max": cuda.jit(device=True)(_maximum), "min": cuda.jit(device=True)(_minimum)}
        element = types.FunctionType(element.__code__, {**element.__globals__, **names},
                                     element.__name__, element.__defaults__, element.__closure__)
    return cuda.jit(device=True)(element)


def _kernel_function(element):
    """The Python source of the grid-stride kernel around ``element``, not yet compiled."""
    _cuda()
    device_element = _device_element(element)

    def kernel(x, g, state, c):
        for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
            x[i] = device_element(x[i], g[i], state, i, c)

    return kernel


def cuda_kernel(rule):
    """The CUDA kernel ``kernel[blocks, threads](x, g, state, c)`` of ``rule``."""
    if rule.element not in _kernels:
        _kernels[rule.element] = _cuda().jit(_kernel_function(rule.element))
    return _kernels[rule.element]


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


def step(rule, x, g, state, coefficients, threads_per_block=DEFAULT_THREADS_PER_BLOCK,
         blocks=None, stream=0):
    """Apply one update of ``rule`` to the device vector ``x`` in place, on the GPU.

    Parameters
    ----------
    rule : adamnb.rules.UpdateRule
    x, g : device vectors (see :func:`as_device_array`), contiguous, 1-D, float32 or float64,
        same length and dtype. ``x`` is overwritten.
    state : device array of shape ``(rule.rows(options), x.size)`` and x's dtype, the rule's
        state vectors (shape ``(0, n)`` when the configuration keeps none), updated in place. The
        caller guarantees the row count; the kernel does not check bounds.
    coefficients : the step's scalars, ``rule.step_coefficients(...)[0]``; cast to x's dtype here.
    threads_per_block : int, default 256
    blocks : int, optional
        Grid size; by default :func:`launch_blocks`. Any positive value is correct (the kernel
        strides over the whole vector); tests use tiny grids to exercise the stride.
    stream : numba stream or 0
        The stream to launch on; 0 is the default stream. The call returns without waiting.
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
    if not (isinstance(threads_per_block, (int, np.integer)) and 1 <= threads_per_block <= 1024):
        raise ValueError(f"Invalid threads_per_block: {threads_per_block!r}; expected 1..1024")
    if x.size == 0:
        return
    if blocks is None:
        blocks = launch_blocks(x.size, threads_per_block)
    elif not (isinstance(blocks, (int, np.integer)) and blocks >= 1):
        raise ValueError(f"Invalid blocks: {blocks!r}; expected a positive integer")
    c = kernels.cast_coefficients(coefficients, x.dtype)
    cuda_kernel(rule)[int(blocks), int(threads_per_block), stream](x, g, state, c)


# --- ahead-of-time compilation (no GPU needed) ----------------------------------------------------

def number_of_coefficients(rule):
    """How many per-step scalars the rule's element takes (the length of ``c``)."""
    coefficients, _ = rule.step_coefficients(rule.validate({}), 1, 1e-3, dict(rule.scalar_state))
    return len(coefficients)


def kernel_signature(rule, dtype):
    """The kernel's argument types for ``dtype``: (x, g, state, c) as numba types."""
    from numba import from_dtype, types as nbtypes
    if np.dtype(dtype).type not in _FLOAT_TYPES:
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    scalar = from_dtype(np.dtype(dtype))
    return (scalar[::1], scalar[::1], scalar[:, ::1],
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


def compile_ptx_for(rule, dtype, cc=(9, 0)):
    """The PTX of ``rule``'s kernel for ``dtype`` and compute capability ``cc``, as text.

    Needs the CUDA compiler (NVVM) but no GPU or driver; not available in the simulator.
    """
    if simulator_enabled():
        raise RuntimeError("compile_ptx_for needs the real CUDA target; it does not work with "
                           "NUMBA_ENABLE_CUDASIM=1")
    cuda = _cuda()
    with _compile_for(tuple(cc)):
        ptx, _ = cuda.compile_ptx(_kernel_function(rule.element), kernel_signature(rule, dtype),
                                  cc=tuple(cc))
    return ptx
