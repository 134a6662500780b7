r"""Classic test functions for numerical optimisation, value and gradient written once.

A small catalogue of the standard benchmark problems used to exercise and compare optimisers.
Each problem's value and gradient are written once, in one function (below); from it this module
generates four Numba-compiled functions of a flat 1-D array ``x``:

``<name>(x)``
    The value, a float.
``<name>_grad(x)``
    The gradient, a new 1-D array.
``<name>_value_and_grad(x)``
    Both, ``(f, g)``, sharing the common sub-expressions.
``<name>_value_and_grad_into(x, g)``
    The value, returned, with the gradient written into the caller's array ``g``: no allocation.
    ``<name>_grad.into`` and ``<name>_value_and_grad.into`` name it: that is how
    :func:`adamnb.minimize`'s compiled loop finds it and runs without allocating a gradient per
    step (:func:`adamnb.optimize._compiled.gradient_protocol`).

All four compute the same operations in the same order, so they agree to the bit. They are
compiled with the package's options (:mod:`adamnb.backends.jit`: cached on disk, NumPy's error
model) and can be called from Python or from a user's own ``@njit`` function.

dtypes
    ``float32`` input is computed in single precision (constants are cast to it) and gives a
    ``float32`` gradient; ``float64`` in double. Integer and bool arrays are computed in
    ``float64``, as NumPy promotes them (``np.array([5, -3])`` is the point ``(5.0, -3.0)``), never
    in integer arithmetic. The value comes back as a Python float. Any other argument raises
    ``TypeError``; an ``x`` that is not 1-D, or has the wrong length for a fixed-dimension problem,
    raises ``ValueError``. ``value_and_grad_into`` refuses (``TypeError``) a ``g`` that is not a
    float array, since an integer one would truncate the gradient, and (``ValueError``) one of the
    wrong shape; numba's compiler refuses (``TypingError``) a read-only ``g`` or one that is not
    an array. ``g`` must not overlap ``x`` (not checked: the test would cost more than a 2-D
    problem's evaluation).

How a problem is written
    A problem whose value is a sum of per-coordinate terms (``quadratic``, ``rastrigin``,
    ``styblinski_tang``) is written as its term: ``<name>_term(x, i)`` returns the term of
    coordinate ``i`` and its derivative by ``x[i]``. Rosenbrock, a sum over pairs of neighbours,
    is written as its pair: ``rosenbrock_pair(x, i)`` returns the term of ``(x[i], x[i+1])`` and
    its derivatives by both. These functions are compiled into the CPU loops here and into the
    CUDA kernels of :mod:`adamnb.problems.cuda_functions`. The other problems are written as one
    function of the whole vector that writes the gradient when given an array for it and skips
    it when given ``None``. Either way the value and its gradient are written once.

Each problem is also described by a frozen :class:`TestFunction` record holding the compiled
functions together with its search domain, the known global minimum value ``fmin``, all known
global minimisers and a standard starting point ``x0``. The records are collected in
:data:`FUNCTIONS` (all in two dimensions, in a fixed order) and looked up with :func:`get`,
which also builds the ``n``-dimensional instances of the scalable problems.

Catalogue
---------
Definitions follow Surjanovic & Bingham, *Virtual Library of Simulation Experiments*
(https://www.sfu.ca/~ssurjano/optimization.html), the original papers cited in each function's
docstring, and the Wikipedia page "Test functions for optimization".

================  ====  ==================  ==========================  ===================
name              dim   domain (per coord)  global minimum              start ``x0``
================  ====  ==================  ==========================  ===================
quadratic         n     [-10, 10]           0 at 0                      (1, ..., 1)
rosenbrock        n>=2  [-5, 10]            0 at (1, ..., 1)            (-1.2, 1, -1.2, ...)
beale             2     [-4.5, 4.5]         0 at (3, 0.5)               (1, 1)
booth             2     [-10, 10]           0 at (1, 3)                 (0, 0)
himmelblau        2     [-5, 5]             0 at four points            (0, 0)
rastrigin         n     [-5.12, 5.12]       0 at 0                      (3, ..., 3)
ackley            n     [-32.768, 32.768]   0 at 0                      (2.5, ..., 2.5)
styblinski_tang   n     [-5, 5]             -39.16616570377142 n at     (0, ..., 0)
                                            x_i = -2.903534027771177
goldstein_price   2     [-2, 2]             3 at (0, -1)                (0.5, -1.5)
three_hump_camel  2     [-5, 5]             0 at (0, 0)                 (-1, -1)
matyas            2     [-10, 10]           0 at (0, 0)                 (5, -3)
easom             2     [-100, 100]         -1 at (pi, pi)              (2, 2.5)
levi13            2     [-10, 10]           0 at (1, 1)                 (-2, 3)
================  ====  ==================  ==========================  ===================

Notes on the individual problems:

* ``quadratic`` is the ill-conditioned convex quadratic
  :math:`f(x) = \tfrac12 \sum_i c_i x_i^2` with :math:`c_i = \kappa^{i/(n-1)}` (``i = 0..n-1``)
  and :math:`\kappa = 10^3` (:data:`QUADRATIC_KAPPA`): the Hessian is diagonal with condition
  number :math:`\kappa` for every ``n >= 2`` (``c_0 = 1`` when ``n = 1``). Its domain
  ``[-10, 10]`` is a convention of this module.
* ``rosenbrock`` is the "extended" form
  :math:`\sum_{i<n-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`; ``x0`` is the classic
  ``(-1.2, 1)``, repeated for higher ``n``. For ``4 <= n <= 7`` the function also has exactly one
  local minimum, near ``(-1, 1, ..., 1)``. The domain is the ``[-5, 10]`` used by Surjanovic &
  Bingham.
* ``himmelblau`` has four global minimisers of value 0: ``(3, 2)`` and three irrational ones,
  given here to full double precision (refined by Newton's method in 40-digit arithmetic).
* ``rastrigin`` uses ``A = 10``; the start 3.0 per coordinate lies in the basin of the local
  minimum near 2.985 per coordinate (small-step gradient descent stops there), so it probes how
  an optimiser copes with multimodality.
* ``ackley`` uses ``a = 20, b = 0.2, c = 2 pi``. The gradient of the ``sqrt`` term is undefined
  at ``x = 0`` (a cone point); it is defined as ``0`` there (the minimum-norm subgradient), which
  makes the origin a stationary point. The start 2.5 per coordinate has a non-zero gradient
  pointing towards the origin.
* ``styblinski_tang`` is :math:`\tfrac12 \sum_i (x_i^4 - 16 x_i^2 + 5 x_i)`. The start ``0``
  has gradient ``2.5`` per coordinate, so descent moves towards the negative (global) basin.
* ``goldstein_price``: from ``(0.5, -1.5)`` gradient-based methods (plain gradient descent,
  Adam, L-BFGS) reach the global minimum ``(0, -1)`` rather than one of the local minima (values
  30, 84 and 840).
* ``three_hump_camel`` is :math:`2x^2 - 1.05x^4 + x^6/6 + xy + y^2`; the start ``(-1, -1)``
  lies in the basin of the global minimum (the two other local minima are near
  ``(+-1.75, -+0.87)``).
* ``matyas`` is :math:`0.26 (x^2 + y^2) - 0.48 x y`; its Hessian has eigenvalues 1.0 and 0.04,
  and ``(5, -3)`` has a component along both.
* ``easom`` is :math:`-\cos x \cos y \, e^{-((x - \pi)^2 + (y - \pi)^2)}`. It is exponentially
  flat away from ``(pi, pi)`` (gradient norm below 1e-40 at distance 10 and more); the start
  ``(2, 2.5)`` is close enough that the gradient has norm of about 0.3 and descent leads to the
  global minimum.
* ``levi13`` is :math:`\sin^2 3\pi x + (x-1)^2 (1 + \sin^2 3\pi y) + (y-1)^2 (1 + \sin^2 2\pi
  y)`, strongly multimodal; the start ``(-2, 3)`` is away from the minimum with a non-zero
  gradient ``(-6, 4)``.

Examples
--------
>>> import numpy as np
>>> from adamnb.problems.functions import get, FUNCTIONS, matyas_value_and_grad
>>> rb = get("rosenbrock")
>>> rb.fun(np.array([1.0, 1.0]))
0.0
>>> rb5 = get("rosenbrock", n=5)
>>> rb5.x0
array([-1.2,  1. , -1.2,  1. , -1.2])
>>> f, g = FUNCTIONS["booth"].value_and_grad(np.zeros(2))
>>> matyas_value_and_grad(np.array([5, -3]))  # integers are computed in float64
(16.04, array([ 4.04, -3.96]))
"""

from __future__ import annotations

import math
import operator
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from types import FunctionType
from typing import Callable, Optional

import numpy as np
from numba.core import types

from adamnb.backends.jit import elementwise, jit, overload_inline

__all__ = ["QUADRATIC_KAPPA", "TestFunction", "FUNCTIONS", "get", "quadratic_term",
           "rosenbrock_pair", "rastrigin_term", "styblinski_tang_term"]
# ... and the four generated functions of every problem, appended where they are bound (below).

#: Condition number of the ``quadratic`` test function.
QUADRATIC_KAPPA = 1e3

_RASTRIGIN_A = 10.0
_ACKLEY_A = 20.0
_ACKLEY_B = 0.2
_ACKLEY_C = 2.0 * math.pi

#: Global minimiser (per coordinate) and minimum (per coordinate) of
#: Styblinski-Tang: the root of 2 x**3 - 16 x + 2.5 near -2.9.
_ST_XMIN = -2.9035340277711771
_ST_FMIN = -39.166165703771415

#: The four global minimisers of Himmelblau's function.
_HIMMELBLAU_MINIMIZERS = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.2831859912861696),
    (3.5844283403304917, -1.8481265269644036),
)


# ---------------------------------------------------------------------------
# Arguments: what the public functions accept
# ---------------------------------------------------------------------------
# Both checks are decided while numba compiles a function for its argument types, and spliced
# into it. For a float array they leave a length comparison that raises with a constant message
# (a message passed or built at run time would cost more than a 2-D problem's evaluation). An
# argument of the wrong kind compiles to a function that raises, so that the caller gets a
# TypeError or ValueError naming the problem rather than numba's typing error.


@elementwise
def _raise_type_error(message):
    raise TypeError(message)


@elementwise
def _raise_value_error(message):
    raise ValueError(message)


def _refusal(a, name, dtypes, what):
    """``(raise_error, message)`` if the numba type ``a`` is not a 1-D array of ``dtypes``
    (described as ``what``), else None."""
    if not isinstance(a, types.Array):
        return _raise_type_error, f"{name} must be a NumPy array of {what}, got {a}"
    if not isinstance(a.dtype, dtypes):
        return _raise_type_error, f"{name} must be an array of {what}, got dtype {a.dtype}"
    if a.ndim != 1:
        return _raise_value_error, f"{name} must be 1-D, got {a.ndim} dimensions"
    return None


def _float_vector(x, dim, wrong_length):
    """``x`` as a 1-D float array (integer and bool arrays as float64), of length ``dim`` when
    ``dim > 0`` (else ValueError ``wrong_length``). ``dim`` and ``wrong_length`` are constants."""


@overload_inline(_float_vector, prefer_literal=True)
def _float_vector_typed(x, dim, wrong_length):
    refusal = _refusal(x, "x", (types.Float, types.Integer, types.Boolean), "real numbers")
    if refusal is not None:
        raise_error, message = refusal

        def refuse(x, dim, wrong_length):
            raise_error(message)
            return np.empty(0)
        return refuse
    length, message = dim.literal_value, wrong_length.literal_value
    if isinstance(x.dtype, types.Float):
        def as_it_is(x, dim, wrong_length):
            if length > 0 and x.shape[0] != length:
                raise ValueError(message)
            return x
        return as_it_is

    def promoted(x, dim, wrong_length):
        if length > 0 and x.shape[0] != length:
            raise ValueError(message)
        return x.astype(np.float64)
    return promoted


def _check_gradient_buffer(x, g):
    """Raise unless ``g`` is a 1-D float array of x's length (a read-only one fails earlier, in
    numba's typing of the writes into it).

    A statement, not a function returning ``g``: numba 0.68 miscompiles the result of a spliced
    overload when a spliced function tests it for None after a loop (the Rosenbrock chain then
    skipped writing its last coordinate).
    """


@overload_inline(_check_gradient_buffer)
def _check_gradient_buffer_typed(x, g):
    refusal = _refusal(g, "g", types.Float, "float32 or float64 (an integer buffer would "
                       "truncate the gradient)")
    if refusal is not None:
        raise_error, message = refusal

        def refuse(x, g):
            raise_error(message)
        return refuse

    def check(x, g):
        if g.shape[0] != x.shape[0]:
            raise ValueError("g must have the shape of x")
    return check


# ---------------------------------------------------------------------------
# The shapes of problem
# ---------------------------------------------------------------------------
# A problem's value and gradient is one function ``value_and_grad(x, g) -> f`` that writes the
# gradient into ``g`` unless ``g`` is None. The generated functions call it with ``None`` or an
# array; numba inlines it into each of them before typing (``inline="always"``), where the
# branches on ``g is None`` are decided, so each generated function is one compiled function
# with no call inside (a call costs as much as a 2-D problem's evaluation) and the value-only
# one computes no gradient. The per-coordinate terms of sums are plain functions (see
# :func:`adamnb.backends.jit.elementwise`), so that the CUDA kernels compile the same source.


def _sum_of_terms(term):
    """``value_and_grad`` of ``f = sum_i term(x, i)[0]``, ``g[i] = term(x, i)[1]``."""
    term = jit(term, inline="always")

    def value_and_grad(x, g):
        f = x.dtype.type(0.0)
        for i in range(x.shape[0]):
            value, derivative = term(x, i)
            f += value
            if g is not None:
                g[i] = derivative
        return f
    return jit(value_and_grad, inline="always")


def _chain_of_pairs(pair):
    """``value_and_grad`` of ``f = sum_{i<n-1} pair(x, i)[0]`` over the pairs ``(x[i], x[i+1])``,
    ``g[i] = (0 + pair(x, i - 1)[2]) + pair(x, i)[1]``, each pair evaluated once."""
    pair = jit(pair, inline="always")

    def value_and_grad(x, g):
        T = x.dtype.type
        f = T(0.0)
        carry = T(0.0)  # what x[i] receives from the pair (x[i-1], x[i])
        for i in range(x.shape[0] - 1):
            value, d_first, d_second = pair(x, i)
            f += value
            if g is not None:
                g[i] = carry + d_first
                carry = T(0.0) + d_second
        if x.shape[0] > 0 and g is not None:
            g[x.shape[0] - 1] = carry
        return f
    return jit(value_and_grad, inline="always")


_whole = jit(inline="always")


# ---------------------------------------------------------------------------
# The problems. Each is written here once; everything else is generated from it.
# ---------------------------------------------------------------------------

_TERM_DOC = """{summary}

    Parameters
    ----------
    x : ndarray, shape (n,), float32 or float64
        The point (in the CUDA kernels, one row of the batch).
    i : int
        The coordinate, ``0 <= i < {last}``.

    Returns
    -------
    {returns}
    """


def _term(summary, last="n", **returns):
    """Decorator: the function as an :func:`~adamnb.backends.jit.elementwise` term (for every
    numba target), its docstring made from ``summary`` and ``returns`` (name -> description)."""
    def decorate(function):
        described = [f"{name} : scalar of x's dtype\n        {text}"
                     for name, text in returns.items()]
        function.__doc__ = _TERM_DOC.format(
            summary=textwrap.fill(summary, 96, subsequent_indent="    "), last=last,
            returns="\n    ".join(described))
        return elementwise(function)
    return decorate


@_term(r"Term ``i`` of the ill-conditioned quadratic and its derivative by ``x[i]``.",
       value=r":math:`\tfrac12 c_i x_i^2`, with :math:`c_i = \kappa^{i/(n-1)}` and "
             r":math:`\kappa` = :data:`QUADRATIC_KAPPA` (:math:`c_0 = 1` when ``n = 1``).",
       derivative=r":math:`c_i x_i`.")
def quadratic_term(x, i):
    T = x.dtype.type
    n = x.shape[0]
    c = T(1.0) if n == 1 else T(QUADRATIC_KAPPA ** (i / (n - 1)))
    derivative = c * x[i]
    return T(0.5) * (derivative * x[i]), derivative


@_term(r"The Rosenbrock term of the pair ``(x[i], x[i+1])`` and its derivatives by both. The "
       r"function is the sum of the terms over ``i < n - 1``, and its derivative by ``x[i]`` is "
       r"``(0 + d_second(i - 1)) + d_first(i)``: the zero added first gives the bits of a "
       r"gradient summed into a zeroed array, signed zeros included.", last="n - 1",
       value=r":math:`100 a^2 + b^2`, with :math:`a = x_{i+1} - x_i^2` and :math:`b = 1 - x_i`.",
       d_first=r":math:`-400 x_i a - 2 b`, the derivative by :math:`x_i`.",
       d_second=r":math:`200 a`, the derivative by :math:`x_{i+1}`.")
def rosenbrock_pair(x, i):
    T = x.dtype.type
    xi = x[i]
    a = x[i + 1] - xi * xi
    b = T(1.0) - xi
    return T(100.0) * a * a + b * b, -T(400.0) * xi * a - T(2.0) * b, T(200.0) * a


@_term(r"Term ``i`` of the Rastrigin function and its derivative by ``x[i]``.",
       value=r":math:`x_i^2 + A (1 - \cos 2\pi x_i)`, ``A = 10``.",
       derivative=r":math:`2 x_i + 2\pi A \sin 2\pi x_i`.")
def rastrigin_term(x, i):
    T = x.dtype.type
    xi = x[i]
    w = T(2.0 * math.pi)
    return (xi * xi + T(_RASTRIGIN_A) * (T(1.0) - math.cos(w * xi)),
            T(2.0) * xi + T(2.0 * math.pi * _RASTRIGIN_A) * math.sin(w * xi))


@_term(r"Term ``i`` of the Styblinski-Tang function and its derivative by ``x[i]``.",
       value=r":math:`\tfrac12 (x_i^4 - 16 x_i^2 + 5 x_i)`.",
       derivative=r":math:`2 x_i^3 - 16 x_i + 2.5`.")
def styblinski_tang_term(x, i):
    T = x.dtype.type
    xi = x[i]
    x2 = xi * xi
    return (T(0.5) * (x2 * x2 - T(16.0) * x2 + T(5.0) * xi),
            T(2.0) * x2 * xi - T(16.0) * xi + T(2.5))


@_whole
def _ackley(x, g):
    T = x.dtype.type
    a = T(_ACKLEY_A)
    b = T(_ACKLEY_B)
    c = T(_ACKLEY_C)
    n = x.shape[0]
    nT = T(n)
    s1 = T(0.0)
    s2 = T(0.0)
    for i in range(n):
        s1 += x[i] * x[i]
        s2 += np.cos(c * x[i])
    r = np.sqrt(s1 / nT)
    e1 = np.exp(-b * r)
    e2 = np.exp(s2 / nT)
    if g is not None:
        # d/dx_i [-a exp(-b r)] = a b exp(-b r) x_i / (n r); 0 at the cone point r = 0
        k1 = T(0.0)
        if r > T(0.0):
            k1 = a * b * e1 / (nT * r)
        k2 = c * e2 / nT
        for i in range(n):
            g[i] = k1 * x[i] + k2 * np.sin(c * x[i])
    # grouped so that the value at the origin is exactly 0
    return (a - a * e1) + (np.exp(T(1.0)) - e2)


@_whole
def _beale(x, g):
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    Y2 = Y * Y
    Y3 = Y2 * Y
    a1 = T(1.5) - X + X * Y
    a2 = T(2.25) - X + X * Y2
    a3 = T(2.625) - X + X * Y3
    if g is not None:
        g[0] = T(2.0) * (a1 * (Y - T(1.0)) + a2 * (Y2 - T(1.0)) + a3 * (Y3 - T(1.0)))
        g[1] = T(2.0) * X * (a1 + T(2.0) * a2 * Y + T(3.0) * a3 * Y2)
    return a1 * a1 + a2 * a2 + a3 * a3


@_whole
def _booth(x, g):
    T = x.dtype.type
    a = x[0] + T(2.0) * x[1] - T(7.0)
    b = T(2.0) * x[0] + x[1] - T(5.0)
    if g is not None:
        g[0] = T(2.0) * a + T(4.0) * b
        g[1] = T(4.0) * a + T(2.0) * b
    return a * a + b * b


@_whole
def _himmelblau(x, g):
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    a = X * X + Y - T(11.0)
    b = X + Y * Y - T(7.0)
    if g is not None:
        g[0] = T(4.0) * X * a + T(2.0) * b
        g[1] = T(2.0) * a + T(4.0) * Y * b
    return a * a + b * b


@_whole
def _goldstein_price(x, g):
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    u = X + Y + T(1.0)
    p = (T(19.0) - T(14.0) * X + T(3.0) * X * X - T(14.0) * Y
         + T(6.0) * X * Y + T(3.0) * Y * Y)
    v = T(2.0) * X - T(3.0) * Y
    q = (T(18.0) - T(32.0) * X + T(12.0) * X * X + T(48.0) * Y
         - T(36.0) * X * Y + T(27.0) * Y * Y)
    A = T(1.0) + u * u * p
    B = T(30.0) + v * v * q
    if g is not None:
        dp = T(-14.0) + T(6.0) * X + T(6.0) * Y  # dp/dx == dp/dy
        dqx = T(-32.0) + T(24.0) * X - T(36.0) * Y
        dqy = T(48.0) - T(36.0) * X + T(54.0) * Y
        dA = T(2.0) * u * p + u * u * dp  # the same for x and y
        g[0] = dA * B + A * (T(4.0) * v * q + v * v * dqx)
        g[1] = dA * B + A * (T(-6.0) * v * q + v * v * dqy)
    return A * B


@_whole
def _three_hump_camel(x, g):
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    x2 = X * X
    x4 = x2 * x2
    if g is not None:
        g[0] = T(4.0) * X - T(4.2) * x2 * X + x4 * X + Y
        g[1] = X + T(2.0) * Y
    return T(2.0) * x2 - T(1.05) * x4 + x4 * x2 / T(6.0) + X * Y + Y * Y


@_whole
def _matyas(x, g):
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    if g is not None:
        g[0] = T(0.52) * X - T(0.48) * Y
        g[1] = T(0.52) * Y - T(0.48) * X
    return T(0.26) * (X * X + Y * Y) - T(0.48) * X * Y


@_whole
def _easom(x, g):
    T = x.dtype.type
    dx = x[0] - T(math.pi)
    dy = x[1] - T(math.pi)
    E = np.exp(-(dx * dx + dy * dy))
    cx = np.cos(x[0])
    cy = np.cos(x[1])
    if g is not None:
        g[0] = E * cy * (np.sin(x[0]) + T(2.0) * dx * cx)
        g[1] = E * cx * (np.sin(x[1]) + T(2.0) * dy * cy)
    return -cx * cy * E


@_whole
def _levi13(x, g):
    T = x.dtype.type
    one = T(1.0)
    two = T(2.0)
    w3 = T(3.0 * math.pi)
    w2 = T(2.0 * math.pi)
    X = x[0]
    Y = x[1]
    s3x = np.sin(w3 * X)
    s3y = np.sin(w3 * Y)
    s2y = np.sin(w2 * Y)
    dx = X - one
    dy = Y - one
    if g is not None:
        # d/dt sin(w t)**2 = 2 w sin(w t) cos(w t)
        g[0] = two * w3 * s3x * np.cos(w3 * X) + two * dx * (one + s3y * s3y)
        g[1] = (dx * dx * two * w3 * s3y * np.cos(w3 * Y)
                + two * dy * (one + s2y * s2y)
                + dy * dy * two * w2 * s2y * np.cos(w2 * Y))
    return s3x * s3x + dx * dx * (one + s3y * s3y) + dy * dy * (one + s2y * s2y)


# ---------------------------------------------------------------------------
# The generated functions
# ---------------------------------------------------------------------------

_KINDS = ("fun", "grad", "value_and_grad", "value_and_grad_into")

_SUMMARIES = {
    "fun": "{label}: the value at ``x``.",
    "grad": "{label}: the gradient at ``x``.",
    "value_and_grad": "{label}: the value and the gradient at ``x``.",
    "value_and_grad_into": "{label}: the value at ``x``, the gradient written into ``g``.",
}

_RETURNS = {
    "fun": ["f : float", "The value."],
    "grad": ["g : ndarray, shape ({shape})",
             "The gradient, a new array of x's float dtype (float64 for integer ``x``)."],
    "value_and_grad": ["f : float", "The value.", "g : ndarray, shape ({shape})",
                       "The gradient, a new array of x's float dtype (float64 for integer "
                       "``x``)."],
    "value_and_grad_into": ["f : float", "The value; the gradient is written into ``g``, with "
                            "no allocation."],
}


def _docstring(kind, name, label, dim, description, domain, minimum, references):
    """The numpydoc docstring of one generated function."""
    shape = "n," if dim is None else f"{dim},"
    into = kind == "value_and_grad_into"
    parameters = [f"x : ndarray, shape ({shape})",
                  "The point: float32 (computed in float32), float64, or integer or bool "
                  "(computed in float64, as NumPy promotes them)."]
    if into:
        parameters += [f"g : ndarray, shape ({shape}), float32 or float64",
                       "Where to write the gradient: writable, and not overlapping ``x`` (not "
                       "checked)."]
    wrong_shape = "``x`` is not 1-D" + ("" if dim is None else
                                        f" or does not have {dim} coordinates")
    raises = ["TypeError", "``x`` is not a NumPy array of real numbers"
              + (", or ``g`` not a NumPy array of floats (an integer ``g`` would truncate the "
                 "gradient)." if into else "."),
              "ValueError", wrong_shape + ("; ``g`` is not 1-D or not of x's length." if into
                                           else ".")]
    if into:
        raises += ["numba.core.errors.TypingError", "``g`` is read-only, or not an array or a "
                   "list (numba's compiler rejects writing into it before the checks run)."]
    sections = [
        ("", [_SUMMARIES[kind].format(label=label), "", description]),
        ("Parameters", parameters),
        ("Returns", [line.format(shape=shape) for line in _RETURNS[kind]]),
        ("Raises", raises),
        ("See Also", [", ".join(_public_name(name, other) for other in _KINDS if other != kind)]),
        ("Notes", [f"Domain [{domain[0]:g}, {domain[1]:g}] per coordinate; global minimum "
                   f"{minimum}. Compiled by numba on the first call for each argument type "
                   "(and cached on disk); callable from a user's ``@njit`` code."]),
        ("References", [f".. [{k}] {ref}" for k, ref in enumerate(references, 1)]),
    ]
    lines = []
    for title, body in sections:
        if title:
            lines += ["", title, "-" * len(title)]
        for line in body:
            # numpydoc: a name-and-type line, then its description indented under it
            described = title in ("Parameters", "Returns", "Raises") and \
                not (" : " in line or line.endswith(("TypeError", "ValueError")))
            indent = "    " if described else ""
            lines += textwrap.wrap(line, 96 - len(indent), break_on_hyphens=False,
                                   initial_indent=indent,
                                   subsequent_indent=indent + ("   " if line.startswith("..")
                                                               else "")) or [""]
    return "\n".join(lines[:1] + ["    " + line if line else "" for line in lines[1:]]) + "\n"


def _public_name(name, kind):
    return name if kind == "fun" else f"{name}_{kind}"


# The four public functions of every problem are copies of these four templates, each copy with
# its own global names _part (the problem's value_and_grad), _dim (its fixed dimension, 0 if it
# has none) and _wrong_length (the message for an x of another length), which numba reads as
# compile-time constants. Globals, not closure variables: numba keys its on-disk cache by the
# code and by the pickled closure variables, and a jitted function pickles differently in every
# process, so closures over them would be compiled again by every process.
_part = _dim = _wrong_length = None


def _fun_template(x):
    return _part(_float_vector(x, _dim, _wrong_length), None)


def _grad_template(x):
    point = _float_vector(x, _dim, _wrong_length)
    g = np.empty_like(point)
    _part(point, g)
    return g


def _value_and_grad_template(x):
    point = _float_vector(x, _dim, _wrong_length)
    g = np.empty_like(point)
    return _part(point, g), g


def _value_and_grad_into_template(x, g):
    point = _float_vector(x, _dim, _wrong_length)
    _check_gradient_buffer(point, g)
    return _part(point, g)


_TEMPLATES = (_fun_template, _grad_template, _value_and_grad_template,
              _value_and_grad_into_template)


def _compile(name, dim, part, docs):
    """The four public functions (a dict by kind) of a problem whose one definition is ``part``,
    its ``value_and_grad(x, g)``; ``dim`` is its fixed dimension or None."""
    namespace = dict(globals(), _part=part, _dim=0 if dim is None else dim,
                     _wrong_length=f"{name} is a {dim}-dimensional test function: x must have "
                                   f"shape ({dim},)")
    compiled = {}
    for kind, template in zip(_KINDS, _TEMPLATES):
        function = FunctionType(template.__code__, namespace, _public_name(name, kind))
        function.__qualname__ = function.__name__
        function.__doc__ = _docstring(kind, name, dim=dim, **docs)
        compiled[kind] = jit(function)
    # The allocation-free protocol of adamnb.minimize's compiled loop: a jitted gradient names,
    # as ``.into``, the function that writes the same gradient into a given buffer.
    compiled["grad"].into = compiled["value_and_grad"].into = compiled["value_and_grad_into"]
    return compiled


def _minimum_text(fmin, minimizers):
    points = ", ".join("(" + ", ".join(f"{v:.16g}" for v in m) + ")" for m in minimizers)
    return f"{fmin:.16g} at {points}"


# ---------------------------------------------------------------------------
# Records and registry
# ---------------------------------------------------------------------------


def _frozen_array(a, ndim):
    arr = np.array(a, dtype=np.float64, copy=True)
    if arr.ndim != ndim:
        raise ValueError(f"expected a {ndim}-D array, got shape {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class TestFunction:
    """An optimisation test problem: compiled functions plus metadata.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"rosenbrock"``.
    fun : callable
        Jitted objective ``fun(x) -> float`` for a 1-D array ``x`` (see the module notes on
        dtypes).
    grad : callable
        Jitted gradient ``grad(x) -> ndarray`` (a new array of x's float dtype).
    value_and_grad : callable
        Jitted ``value_and_grad(x) -> (float, ndarray)``.
    dim : int or None
        Dimension of a fixed-dimension problem, ``None`` for a scalable (``n``-dimensional) one.
        The dimension of this particular instance is :attr:`n`.
    domain : tuple of float
        ``(lower, upper)`` bounds, the same for every coordinate.
    fmin : float
        Global minimum value (for this instance's dimension).
    minimizers : ndarray, shape (k, n), float64
        All known global minimisers, one per row (read-only).
    x0 : ndarray, shape (n,), float64
        Standard starting point (read-only).
    description : str
        One-line formula.
    value_and_grad_into : callable, optional
        Jitted ``value_and_grad_into(x, g) -> float``: the same value, with the same gradient
        written into ``g`` instead of a new array (``grad.into`` and ``value_and_grad.into``
        name it, for :func:`adamnb.minimize`).

    Raises
    ------
    ValueError
        ``minimizers`` is not 2-D, ``x0`` not 1-D, or their dimensions differ.

    Notes
    -----
    Instances are immutable; use :meth:`with_dim` (or :func:`get`) to obtain a scalable problem
    in another dimension.
    """

    __test__ = False  # not a pytest test class despite the name

    name: str
    fun: Callable
    grad: Callable
    value_and_grad: Callable
    dim: Optional[int]
    domain: tuple
    fmin: float
    minimizers: np.ndarray
    x0: np.ndarray
    description: str
    value_and_grad_into: Optional[Callable] = None
    _factory: Optional[Callable[[int], "TestFunction"]] = field(
        default=None, repr=False
    )
    _min_dim: int = field(default=1, repr=False)

    def __post_init__(self):
        lo, hi = self.domain
        object.__setattr__(self, "domain", (float(lo), float(hi)))
        object.__setattr__(self, "fmin", float(self.fmin))
        object.__setattr__(self, "minimizers", _frozen_array(self.minimizers, 2))
        object.__setattr__(self, "x0", _frozen_array(self.x0, 1))
        if self.minimizers.shape[1] != self.x0.shape[0]:
            raise ValueError("minimizers and x0 have different dimensions")

    @property
    def n(self) -> int:
        """Dimension of this instance."""
        return int(self.x0.shape[0])

    @property
    def bounds(self) -> list:
        """Per-coordinate bounds ``[(lower, upper)] * n`` (e.g. for SciPy)."""
        return [self.domain] * self.n

    def with_dim(self, n: int) -> "TestFunction":
        """Return this problem in dimension ``n``.

        Parameters
        ----------
        n : int
            Requested dimension.

        Returns
        -------
        TestFunction
            The instance for dimension ``n`` with ``fmin``, ``minimizers`` and ``x0`` adapted
            to ``n``.

        Raises
        ------
        TypeError
            ``n`` is not an integer.
        ValueError
            If the problem has a fixed dimension different from ``n``, or ``n`` is below the
            smallest dimension the problem supports.
        """
        n = operator.index(n)
        if self.dim is not None:
            if n != self.dim:
                raise ValueError(
                    f"{self.name!r} is a fixed {self.dim}-dimensional function; "
                    f"it cannot be used with n={n}"
                )
            return self
        if n < self._min_dim:
            raise ValueError(
                f"{self.name!r} needs n >= {self._min_dim}, got n={n}"
            )
        if n == self.n:
            return self
        return self._factory(n)

    def nearest_minimizer_distance(self, x) -> float:
        """Euclidean distance from ``x`` to the nearest known global minimiser.

        Parameters
        ----------
        x : array_like, shape (n,)
            The point (converted to float64).

        Returns
        -------
        float

        Raises
        ------
        ValueError
            ``x`` does not have :attr:`n` coordinates.
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.n:
            raise ValueError(
                f"x has {x.shape[0]} coordinates but {self.name!r} instance is "
                f"{self.n}-dimensional"
            )
        return float(np.min(np.linalg.norm(self.minimizers - x, axis=1)))


_VLSE = ("S. Surjanovic and D. Bingham, *Virtual Library of Simulation Experiments: Test "
         "Functions and Datasets*, Simon Fraser University, https://www.sfu.ca/~ssurjano/{}.html")


def _problem(name, label, description, references, domain, *, terms=None, pairs=None,
             whole=None, dim=None, minimum):
    """The compiled functions (a dict by kind) of one problem, from its one definition: its
    per-coordinate ``terms``, its ``pairs`` of neighbours, or its ``whole`` value and gradient."""
    docs = dict(label=label, description=description, domain=domain, minimum=minimum,
                references=references)
    if terms is not None:
        return _compile(name, dim, _sum_of_terms(terms), docs)
    if pairs is not None:
        return _compile(name, dim, _chain_of_pairs(pairs), docs)
    return _compile(name, dim, whole, docs)


def _record(compiled, **fields):
    return TestFunction(fun=compiled["fun"], grad=compiled["grad"],
                        value_and_grad=compiled["value_and_grad"],
                        value_and_grad_into=compiled["value_and_grad_into"], **fields)


def _fixed(name, label, description, references, domain, fmin, minimizers, x0, **math):
    minimizers = np.atleast_2d(np.asarray(minimizers, dtype=np.float64))
    dim = int(minimizers.shape[1])
    compiled = _problem(name, label, description, references, domain, dim=dim,
                        minimum=_minimum_text(fmin, minimizers), **math)
    return _record(compiled, name=name, dim=dim, domain=domain, fmin=fmin,
                   minimizers=minimizers, x0=x0, description=description)


def _scalable(name, label, description, references, domain, fmin_1, xmin_1, x0_fn, min_dim=1,
              **math):
    """The 2-D instance of an n-D problem, with a cached factory ``n -> TestFunction``.

    ``fmin_1`` and ``xmin_1`` are the minimum value and minimiser per coordinate (the minimum
    value scales as ``n * fmin_1``); ``x0_fn(n)`` returns the start.
    """
    minimum = f"{fmin_1:.16g} n at x_i = {xmin_1:.16g}" if fmin_1 else f"0 at x_i = {xmin_1:g}"
    compiled = _problem(name, label, description, references, domain, minimum=minimum, **math)

    @lru_cache(maxsize=None)
    def factory(n):
        return _record(compiled, name=name, dim=None, domain=domain,
                       fmin=(n * fmin_1 if fmin_1 != 0.0 else 0.0),
                       minimizers=np.full((1, n), xmin_1), x0=x0_fn(n),
                       description=description, _factory=factory, _min_dim=min_dim)

    return factory(2)


def _rosenbrock_x0(n):
    x0 = np.ones(n)
    x0[0::2] = -1.2
    return x0


_ENTRIES = (
    _scalable(
        "quadratic", "Ill-conditioned quadratic",
        "f(x) = 0.5 * sum_i kappa**(i/(n-1)) * x_i**2, kappa = 1e3",
        ["A convention of this module: a diagonal quadratic whose Hessian has condition number "
         "kappa = 1e3 in every dimension n >= 2."],
        (-10.0, 10.0), 0.0, 0.0, lambda n: np.ones(n), terms=quadratic_term,
    ),
    _scalable(
        "rosenbrock", "Extended Rosenbrock function",
        "f(x) = sum_{i<n-1} 100*(x_{i+1} - x_i**2)**2 + (1 - x_i)**2",
        ["H. H. Rosenbrock, An automatic method for finding the greatest or least value of a "
         "function, *The Computer Journal* 3(3):175-184, 1960.", _VLSE.format("rosen")],
        (-5.0, 10.0), 0.0, 1.0, _rosenbrock_x0, min_dim=2, pairs=rosenbrock_pair,
    ),
    _fixed(
        "beale", "Beale's function",
        "f(x, y) = (1.5 - x + x*y)**2 + (2.25 - x + x*y**2)**2 + (2.625 - x + x*y**3)**2",
        ["E. M. L. Beale, On an iterative method for finding a local minimum of a function of "
         "more than one variable, Technical Report 25, Statistical Techniques Research Group, "
         "Princeton University, 1958.", _VLSE.format("beale")],
        (-4.5, 4.5), 0.0, [[3.0, 0.5]], [1.0, 1.0], whole=_beale,
    ),
    _fixed(
        "booth", "Booth's function",
        "f(x, y) = (x + 2*y - 7)**2 + (2*x + y - 5)**2",
        [_VLSE.format("booth")],
        (-10.0, 10.0), 0.0, [[1.0, 3.0]], [0.0, 0.0], whole=_booth,
    ),
    _fixed(
        "himmelblau", "Himmelblau's function",
        "f(x, y) = (x**2 + y - 11)**2 + (x + y**2 - 7)**2",
        ["D. M. Himmelblau, *Applied Nonlinear Programming*, McGraw-Hill, 1972."],
        (-5.0, 5.0), 0.0, _HIMMELBLAU_MINIMIZERS, [0.0, 0.0], whole=_himmelblau,
    ),
    _scalable(
        "rastrigin", "Rastrigin function",
        "f(x) = 10*n + sum_i (x_i**2 - 10*cos(2*pi*x_i))",
        ["L. A. Rastrigin, *Systems of Extremal Control*, Nauka, Moscow, 1974.",
         _VLSE.format("rastr")],
        (-5.12, 5.12), 0.0, 0.0, lambda n: np.full(n, 3.0), terms=rastrigin_term,
    ),
    _scalable(
        "ackley", "Ackley function",
        "f(x) = -20*exp(-0.2*sqrt(mean(x**2))) - exp(mean(cos(2*pi*x))) + 20 + e",
        ["D. H. Ackley, *A Connectionist Machine for Genetic Hillclimbing*, Kluwer, 1987.",
         _VLSE.format("ackley")],
        (-32.768, 32.768), 0.0, 0.0, lambda n: np.full(n, 2.5), whole=_ackley,
    ),
    _scalable(
        "styblinski_tang", "Styblinski-Tang function",
        "f(x) = 0.5 * sum_i (x_i**4 - 16*x_i**2 + 5*x_i)",
        ["M. A. Styblinski and T.-S. Tang, Experiments in nonconvex optimization: stochastic "
         "approximation with function smoothing and simulated annealing, *Neural Networks* "
         "3(4):467-483, 1990.", _VLSE.format("stybtang")],
        (-5.0, 5.0), _ST_FMIN, _ST_XMIN, lambda n: np.zeros(n), terms=styblinski_tang_term,
    ),
    _fixed(
        "goldstein_price", "Goldstein-Price function",
        "f(x, y) = [1 + (x+y+1)**2 (19 - 14x + 3x**2 - 14y + 6xy + 3y**2)] "
        "* [30 + (2x-3y)**2 (18 - 32x + 12x**2 + 48y - 36xy + 27y**2)]",
        ["A. A. Goldstein and J. F. Price, On descent from local minima, *Mathematics of "
         "Computation* 25(115):569-574, 1971.", _VLSE.format("goldpr")],
        (-2.0, 2.0), 3.0, [[0.0, -1.0]], [0.5, -1.5], whole=_goldstein_price,
    ),
    _fixed(
        "three_hump_camel", "Three-hump camel function",
        "f(x, y) = 2*x**2 - 1.05*x**4 + x**6/6 + x*y + y**2",
        [_VLSE.format("camel3")],
        (-5.0, 5.0), 0.0, [[0.0, 0.0]], [-1.0, -1.0], whole=_three_hump_camel,
    ),
    _fixed(
        "matyas", "Matyas function",
        "f(x, y) = 0.26*(x**2 + y**2) - 0.48*x*y",
        [_VLSE.format("matya")],
        (-10.0, 10.0), 0.0, [[0.0, 0.0]], [5.0, -3.0], whole=_matyas,
    ),
    _fixed(
        "easom", "Easom function",
        "f(x, y) = -cos(x)*cos(y)*exp(-((x - pi)**2 + (y - pi)**2))",
        ["E. E. Easom, A survey of global optimization techniques, M. Eng. thesis, University "
         "of Louisville, 1990.", _VLSE.format("easom")],
        (-100.0, 100.0), -1.0, [[math.pi, math.pi]], [2.0, 2.5], whole=_easom,
    ),
    _fixed(
        "levi13", "Levi function N. 13",
        "f(x, y) = sin(3*pi*x)**2 + (x-1)**2*(1 + sin(3*pi*y)**2) "
        "+ (y-1)**2*(1 + sin(2*pi*y)**2)",
        [_VLSE.format("levy13")],
        (-10.0, 10.0), 0.0, [[1.0, 1.0]], [-2.0, 3.0], whole=_levi13,
    ),
)

#: All test problems (2-D instances), keyed by name, in a fixed order.
FUNCTIONS = {tf.name: tf for tf in _ENTRIES}

# The module-level names of the generated functions: rosenbrock, rosenbrock_grad, ...
for _tf in _ENTRIES:
    for _kind in _KINDS:
        globals()[_public_name(_tf.name, _kind)] = getattr(_tf, _kind)
        __all__.append(_public_name(_tf.name, _kind))
del _tf, _kind


def get(name: str, n: Optional[int] = None) -> TestFunction:
    """Look up a test problem by name, optionally in dimension ``n``.

    Parameters
    ----------
    name : str
        One of the keys of :data:`FUNCTIONS`, in any case (as method names are).
    n : int, optional
        Dimension. ``None`` gives the default (2-D) instance. Fixed-dimension problems only
        accept their own dimension.

    Returns
    -------
    TestFunction

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names) or an unsupported dimension.
    TypeError
        ``n`` is not an integer.
    """
    try:
        tf = FUNCTIONS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown test function {name!r}; valid names are: "
            + ", ".join(FUNCTIONS)
        ) from None
    if n is None:
        return tf
    return tf.with_dim(n)
