"""The one place that builds numba's compilation options.

Every CPU kernel in adamnb is compiled with these options so that a change of policy (caching,
error model, fast-math) is made once.

* ``cache=True``: compiled machine code is stored next to the sources (numba's on-disk cache), so a
  second process starts in milliseconds rather than recompiling.
* ``error_model="numpy"``: division by zero yields inf/NaN as in NumPy instead of raising, so a run
  that blows up is reported through ``OptimizeResult.status`` rather than an exception deep inside a
  kernel.
* no ``fastmath``: re-association and contraction would make the vectorised body and the scalar
  remainder of a loop round differently, and then the serial and parallel kernels (which split the
  array at different places) would not give the same bits. IEEE arithmetic keeps them identical.
"""

import numba

JIT_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True}


def jit(function=None, **overrides):
    """``numba.njit`` with the package's options; keyword overrides win."""
    options = {**JIT_OPTIONS, **overrides}
    if function is None:
        return numba.njit(**options)
    return numba.njit(**options)(function)


def elementwise(function):
    """Mark a per-element update as callable from any numba target (CPU ``njit`` or CUDA).

    ``register_jitable`` keeps ``function`` a plain Python function that numba compiles inline
    wherever a kernel calls it, which lets one definition of each update rule serve every target. It
    also pickles by reference, which keeps numba's on-disk cache of the kernels built around it valid
    across processes.
    """
    return numba.extending.register_jitable(inline="always")(function)


def overload_inline(function, prefer_literal=False):
    """Decorator: how numba compiles ``function`` (a Python stand-in) for each argument type.

    numba's ``overload``, with the implementation that the decorated typing function returns
    spliced into the caller's IR, as :func:`elementwise` functions are, so that a check or a
    conversion decided at compile time leaves no call behind. With ``prefer_literal`` the typing
    function sees constant arguments as literal types first, so that their values can become
    constants of the implementation (a length to compare with, a message to raise).
    """
    return numba.extending.overload(function, inline="always", prefer_literal=prefer_literal)
