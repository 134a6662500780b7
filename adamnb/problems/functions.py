"""Classic test functions for numerical optimisation.

This module is a small catalogue of the standard benchmark problems used to
exercise (and compare) optimisers.  Every problem comes as four
Numba-compiled functions operating on a flat 1-D floating point array ``x``:

``<name>(x)``
    The objective value, a scalar.
``<name>_grad(x)``
    The analytic gradient, a *new* 1-D array with the dtype of ``x``.
``<name>_value_and_grad(x)``
    Both at once, ``(f, g)``, sharing the common sub-expressions.
``<name>_value_and_grad_into(x, g)``
    The same value, returned, and the same gradient, written into the caller's
    array ``g``: no allocation.  It is the one implementation of each problem's
    gradient (the two functions above call it), so all three agree to the bit.
    ``<name>_grad.into`` and ``<name>_value_and_grad.into`` name it: that is how
    :func:`adamnb.minimize`'s compiled loop finds it and runs without allocating
    a gradient array per step.

All of them are ``@numba.njit(cache=True)`` and accept ``float64`` as well as
``float32`` input; for ``float32`` input the arithmetic is done in single
precision (constants are cast to the input dtype) and the gradient is a
``float32`` array.  The value is returned as a Python ``float``.

Each problem is also described by a frozen :class:`TestFunction` record
holding the compiled functions together with its search domain, the known
global minimum value ``fmin``, all known global minimisers and a standard
starting point ``x0``.  The records are collected in :data:`FUNCTIONS` (all
in two dimensions, in a fixed order) and can be looked up with :func:`get`,
which also builds the ``n``-dimensional variants of the scalable problems.

Catalogue
---------
Definitions follow Surjanovic & Bingham, *Virtual Library of Simulation
Experiments* (https://www.sfu.ca/~ssurjano/optimization.html) and the
Wikipedia page "Test functions for optimization".

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
  ``f(x) = 0.5 * sum_i c_i x_i**2`` with ``c_i = kappa**(i / (n - 1))``
  (``i = 0..n-1``) and ``kappa = 1e3`` (:data:`QUADRATIC_KAPPA`): the Hessian
  is diagonal with condition number ``kappa`` for every ``n >= 2``
  (``c_0 = 1`` when ``n = 1``).  Its domain ``[-10, 10]`` is a convention of
  this module.
* ``rosenbrock`` is the "extended" form
  ``sum_{i<n-1} 100 (x_{i+1} - x_i**2)**2 + (1 - x_i)**2``; ``x0`` is the
  classic ``(-1.2, 1)``, repeated for higher ``n``.  For ``4 <= n <= 7`` the
  function also has exactly one local minimum, near ``(-1, 1, ..., 1)``.  The
  domain is the ``[-5, 10]`` used by Surjanovic & Bingham.
* ``himmelblau`` has four global minimisers of value 0: ``(3, 2)`` and three
  irrational ones, given here to full double precision (refined by Newton's
  method in 40-digit arithmetic).
* ``rastrigin`` uses ``A = 10``; the start 3.0 per coordinate lies in the
  basin of the local minimum near 2.985 per coordinate (small-step gradient
  descent stops there), so it probes how an optimiser copes with
  multimodality.
* ``ackley`` uses ``a = 20, b = 0.2, c = 2 pi``.  The gradient of the
  ``sqrt`` term is undefined at ``x = 0`` (a cone point); it is defined as
  ``0`` there (the minimum-norm subgradient), which makes the origin a
  stationary point.  The start 2.5 per coordinate has a non-zero gradient
  pointing towards the origin.
* ``styblinski_tang`` is ``0.5 * sum_i (x_i**4 - 16 x_i**2 + 5 x_i)``.  The
  start ``0`` has gradient ``2.5`` per coordinate, so descent moves towards
  the negative (global) basin.
* ``goldstein_price``: from ``(0.5, -1.5)`` gradient-based methods (plain
  gradient descent, Adam, L-BFGS) reach the global minimum ``(0, -1)``
  rather than one of the local minima (values 30, 84 and 840).
* ``three_hump_camel`` is ``2x**2 - 1.05x**4 + x**6/6 + xy + y**2``; the
  start ``(-1, -1)`` lies in the basin of the global minimum (the two other
  local minima are near ``(+-1.75, -+0.87)``).
* ``matyas`` is ``0.26 (x**2 + y**2) - 0.48 x y``; its Hessian has
  eigenvalues 1.0 and 0.04, and ``(5, -3)`` has a component along both.
* ``easom`` is ``-cos(x) cos(y) exp(-((x - pi)**2 + (y - pi)**2))``.  It is
  exponentially flat away from ``(pi, pi)`` (gradient norm below 1e-40 at
  distance 10 and more); the start ``(2, 2.5)`` is close enough that the
  gradient has norm of about 0.3 and descent leads to the global minimum.
* ``levi13`` is ``sin(3 pi x)**2 + (x-1)**2 (1 + sin(3 pi y)**2)
  + (y-1)**2 (1 + sin(2 pi y)**2)``, strongly multimodal; the start
  ``(-2, 3)`` is away from the minimum with a non-zero gradient ``(-6, 4)``.

Examples
--------
>>> import numpy as np
>>> from adamnb.problems.functions import get, FUNCTIONS
>>> rb = get("rosenbrock")
>>> rb.fun(np.array([1.0, 1.0]))
0.0
>>> rb5 = get("rosenbrock", n=5)
>>> rb5.x0
array([-1.2,  1. , -1.2,  1. , -1.2])
>>> f, g = FUNCTIONS["booth"].value_and_grad(np.zeros(2))
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional

import numba
import numpy as np

__all__ = [
    "QUADRATIC_KAPPA",
    "TestFunction",
    "FUNCTIONS",
    "get",
    "quadratic",
    "quadratic_grad",
    "quadratic_value_and_grad",
    "quadratic_value_and_grad_into",
    "rosenbrock",
    "rosenbrock_grad",
    "rosenbrock_value_and_grad",
    "rosenbrock_value_and_grad_into",
    "beale",
    "beale_grad",
    "beale_value_and_grad",
    "beale_value_and_grad_into",
    "booth",
    "booth_grad",
    "booth_value_and_grad",
    "booth_value_and_grad_into",
    "himmelblau",
    "himmelblau_grad",
    "himmelblau_value_and_grad",
    "himmelblau_value_and_grad_into",
    "rastrigin",
    "rastrigin_grad",
    "rastrigin_value_and_grad",
    "rastrigin_value_and_grad_into",
    "ackley",
    "ackley_grad",
    "ackley_value_and_grad",
    "ackley_value_and_grad_into",
    "styblinski_tang",
    "styblinski_tang_grad",
    "styblinski_tang_value_and_grad",
    "styblinski_tang_value_and_grad_into",
    "goldstein_price",
    "goldstein_price_grad",
    "goldstein_price_value_and_grad",
    "goldstein_price_value_and_grad_into",
    "three_hump_camel",
    "three_hump_camel_grad",
    "three_hump_camel_value_and_grad",
    "three_hump_camel_value_and_grad_into",
    "matyas",
    "matyas_grad",
    "matyas_value_and_grad",
    "matyas_value_and_grad_into",
    "easom",
    "easom_grad",
    "easom_value_and_grad",
    "easom_value_and_grad_into",
    "levi13",
    "levi13_grad",
    "levi13_value_and_grad",
    "levi13_value_and_grad_into",
]

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

_jit = numba.njit(cache=True)


@numba.njit(cache=True, inline="always")
def _check_2d(x):
    if x.ndim != 1 or x.shape[0] != 2:
        raise ValueError("this test function is 2-dimensional: x must have shape (2,)")


# ---------------------------------------------------------------------------
# quadratic
# ---------------------------------------------------------------------------


@_jit
def _quadratic_coeff(i, n, T):
    if n == 1:
        return T(1.0)
    return T(QUADRATIC_KAPPA ** (i / (n - 1)))


@_jit
def quadratic(x):
    """Ill-conditioned quadratic ``0.5 * sum_i kappa**(i/(n-1)) x_i**2``."""
    T = x.dtype.type
    n = x.shape[0]
    f = T(0.0)
    for i in range(n):
        f += _quadratic_coeff(i, n, T) * x[i] * x[i]
    return T(0.5) * f


@_jit
def quadratic_value_and_grad_into(x, g):
    """Value of :func:`quadratic`; its gradient is written into ``g`` (shape of ``x``)."""
    T = x.dtype.type
    n = x.shape[0]
    f = T(0.0)
    for i in range(n):
        ci = _quadratic_coeff(i, n, T)
        gi = ci * x[i]
        g[i] = gi
        f += gi * x[i]
    return T(0.5) * f


@_jit
def quadratic_value_and_grad(x):
    """Value and gradient of :func:`quadratic`."""
    g = np.empty_like(x)
    return quadratic_value_and_grad_into(x, g), g


@_jit
def quadratic_grad(x):
    """Gradient of :func:`quadratic`."""
    return quadratic_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# rosenbrock
# ---------------------------------------------------------------------------


@_jit
def rosenbrock(x):
    """Rosenbrock ``sum 100 (x_{i+1} - x_i**2)**2 + (1 - x_i)**2``."""
    T = x.dtype.type
    c100 = T(100.0)
    one = T(1.0)
    f = T(0.0)
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = one - x[i]
        f += c100 * a * a + b * b
    return f


@_jit
def rosenbrock_value_and_grad_into(x, g):
    """Value of :func:`rosenbrock`; its gradient is written into ``g`` (shape of ``x``).

    Each ``g[i]`` is written once, as ``(0 + 200 a_{i-1}) + (-400 x_i a_i - 2 b_i)``: the sums of
    a gradient accumulated in a zeroed array, to the bit (signed zeros included).
    """
    T = x.dtype.type
    c100 = T(100.0)
    c200 = T(200.0)
    c400 = T(400.0)
    zero = T(0.0)
    one = T(1.0)
    two = T(2.0)
    n = x.shape[0]
    f = zero
    carry = zero  # the term x_i receives from the pair (x_{i-1}, x_i)
    for i in range(n - 1):
        a = x[i + 1] - x[i] * x[i]
        b = one - x[i]
        f += c100 * a * a + b * b
        g[i] = carry + (-c400 * x[i] * a - two * b)
        carry = zero + c200 * a
    if n > 0:
        g[n - 1] = carry
    return f


@_jit
def rosenbrock_value_and_grad(x):
    """Value and gradient of :func:`rosenbrock`."""
    g = np.empty_like(x)
    return rosenbrock_value_and_grad_into(x, g), g


@_jit
def rosenbrock_grad(x):
    """Gradient of :func:`rosenbrock`."""
    return rosenbrock_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# beale
# ---------------------------------------------------------------------------


@_jit
def beale(x):
    """Beale ``(1.5 - x + xy)**2 + (2.25 - x + xy**2)**2 + (2.625 - x + xy**3)**2``."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    a1 = T(1.5) - X + X * Y
    a2 = T(2.25) - X + X * Y * Y
    a3 = T(2.625) - X + X * Y * Y * Y
    return a1 * a1 + a2 * a2 + a3 * a3


@_jit
def beale_value_and_grad_into(x, g):
    """Value of :func:`beale`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    one = T(1.0)
    two = T(2.0)
    X = x[0]
    Y = x[1]
    Y2 = Y * Y
    Y3 = Y2 * Y
    a1 = T(1.5) - X + X * Y
    a2 = T(2.25) - X + X * Y2
    a3 = T(2.625) - X + X * Y3
    g[0] = two * (a1 * (Y - one) + a2 * (Y2 - one) + a3 * (Y3 - one))
    g[1] = two * X * (a1 + two * a2 * Y + T(3.0) * a3 * Y2)
    return a1 * a1 + a2 * a2 + a3 * a3


@_jit
def beale_value_and_grad(x):
    """Value and gradient of :func:`beale`."""
    g = np.empty_like(x)
    return beale_value_and_grad_into(x, g), g


@_jit
def beale_grad(x):
    """Gradient of :func:`beale`."""
    return beale_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# booth
# ---------------------------------------------------------------------------


@_jit
def booth(x):
    """Booth ``(x + 2y - 7)**2 + (2x + y - 5)**2``."""
    _check_2d(x)
    T = x.dtype.type
    two = T(2.0)
    a = x[0] + two * x[1] - T(7.0)
    b = two * x[0] + x[1] - T(5.0)
    return a * a + b * b


@_jit
def booth_value_and_grad_into(x, g):
    """Value of :func:`booth`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    two = T(2.0)
    four = T(4.0)
    a = x[0] + two * x[1] - T(7.0)
    b = two * x[0] + x[1] - T(5.0)
    g[0] = two * a + four * b
    g[1] = four * a + two * b
    return a * a + b * b


@_jit
def booth_value_and_grad(x):
    """Value and gradient of :func:`booth`."""
    g = np.empty_like(x)
    return booth_value_and_grad_into(x, g), g


@_jit
def booth_grad(x):
    """Gradient of :func:`booth`."""
    return booth_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# himmelblau
# ---------------------------------------------------------------------------


@_jit
def himmelblau(x):
    """Himmelblau ``(x**2 + y - 11)**2 + (x + y**2 - 7)**2``."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    a = X * X + Y - T(11.0)
    b = X + Y * Y - T(7.0)
    return a * a + b * b


@_jit
def himmelblau_value_and_grad_into(x, g):
    """Value of :func:`himmelblau`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    two = T(2.0)
    four = T(4.0)
    X = x[0]
    Y = x[1]
    a = X * X + Y - T(11.0)
    b = X + Y * Y - T(7.0)
    g[0] = four * X * a + two * b
    g[1] = two * a + four * Y * b
    return a * a + b * b


@_jit
def himmelblau_value_and_grad(x):
    """Value and gradient of :func:`himmelblau`."""
    g = np.empty_like(x)
    return himmelblau_value_and_grad_into(x, g), g


@_jit
def himmelblau_grad(x):
    """Gradient of :func:`himmelblau`."""
    return himmelblau_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# rastrigin
# ---------------------------------------------------------------------------


@_jit
def rastrigin(x):
    """Rastrigin ``A n + sum (x_i**2 - A cos(2 pi x_i))`` with ``A = 10``."""
    T = x.dtype.type
    A = T(_RASTRIGIN_A)
    w = T(2.0 * math.pi)
    f = T(0.0)
    for i in range(x.shape[0]):
        f += x[i] * x[i] + A * (T(1.0) - np.cos(w * x[i]))
    return f


@_jit
def rastrigin_value_and_grad_into(x, g):
    """Value of :func:`rastrigin`; its gradient is written into ``g`` (shape of ``x``)."""
    T = x.dtype.type
    A = T(_RASTRIGIN_A)
    w = T(2.0 * math.pi)
    wA = T(2.0 * math.pi * _RASTRIGIN_A)
    two = T(2.0)
    f = T(0.0)
    for i in range(x.shape[0]):
        xi = x[i]
        f += xi * xi + A * (T(1.0) - np.cos(w * xi))
        g[i] = two * xi + wA * np.sin(w * xi)
    return f


@_jit
def rastrigin_value_and_grad(x):
    """Value and gradient of :func:`rastrigin`."""
    g = np.empty_like(x)
    return rastrigin_value_and_grad_into(x, g), g


@_jit
def rastrigin_grad(x):
    """Gradient of :func:`rastrigin`."""
    return rastrigin_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# ackley
# ---------------------------------------------------------------------------


@_jit
def ackley(x):
    """Ackley ``-a exp(-b sqrt(mean x**2)) - exp(mean cos(c x)) + a + e``."""
    T = x.dtype.type
    a = T(_ACKLEY_A)
    b = T(_ACKLEY_B)
    c = T(_ACKLEY_C)
    n = x.shape[0]
    s1 = T(0.0)
    s2 = T(0.0)
    for i in range(n):
        s1 += x[i] * x[i]
        s2 += np.cos(c * x[i])
    r = np.sqrt(s1 / T(n))
    # grouped so that the value at the origin is exactly 0
    return (a - a * np.exp(-b * r)) + (np.exp(T(1.0)) - np.exp(s2 / T(n)))


@_jit
def ackley_value_and_grad_into(x, g):
    """Value of :func:`ackley`; its gradient is written into ``g`` (shape of ``x``)."""
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
    f = (a - a * e1) + (np.exp(T(1.0)) - e2)
    # d/dx_i [-a exp(-b r)] = a b exp(-b r) x_i / (n r)
    k1 = T(0.0)
    if r > T(0.0):
        k1 = a * b * e1 / (nT * r)
    k2 = c * e2 / nT
    for i in range(n):
        g[i] = k1 * x[i] + k2 * np.sin(c * x[i])
    return f


@_jit
def ackley_value_and_grad(x):
    """Value and gradient of :func:`ackley`."""
    g = np.empty_like(x)
    return ackley_value_and_grad_into(x, g), g


@_jit
def ackley_grad(x):
    """Gradient of :func:`ackley`."""
    return ackley_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# styblinski_tang
# ---------------------------------------------------------------------------


@_jit
def styblinski_tang(x):
    """Styblinski-Tang ``0.5 * sum (x_i**4 - 16 x_i**2 + 5 x_i)``."""
    T = x.dtype.type
    f = T(0.0)
    for i in range(x.shape[0]):
        xi = x[i]
        x2 = xi * xi
        f += x2 * x2 - T(16.0) * x2 + T(5.0) * xi
    return T(0.5) * f


@_jit
def styblinski_tang_value_and_grad_into(x, g):
    """Value of :func:`styblinski_tang`; its gradient is written into ``g`` (shape of ``x``)."""
    T = x.dtype.type
    f = T(0.0)
    for i in range(x.shape[0]):
        xi = x[i]
        x2 = xi * xi
        f += x2 * x2 - T(16.0) * x2 + T(5.0) * xi
        g[i] = T(2.0) * x2 * xi - T(16.0) * xi + T(2.5)
    return T(0.5) * f


@_jit
def styblinski_tang_value_and_grad(x):
    """Value and gradient of :func:`styblinski_tang`."""
    g = np.empty_like(x)
    return styblinski_tang_value_and_grad_into(x, g), g


@_jit
def styblinski_tang_grad(x):
    """Gradient of :func:`styblinski_tang`."""
    return styblinski_tang_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# goldstein_price
# ---------------------------------------------------------------------------


@_jit
def goldstein_price(x):
    """Goldstein-Price ``[1 + (x+y+1)**2 p(x, y)] [30 + (2x-3y)**2 q(x, y)]``."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    u = X + Y + T(1.0)
    p = (T(19.0) - T(14.0) * X + T(3.0) * X * X - T(14.0) * Y
         + T(6.0) * X * Y + T(3.0) * Y * Y)
    v = T(2.0) * X - T(3.0) * Y
    q = (T(18.0) - T(32.0) * X + T(12.0) * X * X + T(48.0) * Y
         - T(36.0) * X * Y + T(27.0) * Y * Y)
    return (T(1.0) + u * u * p) * (T(30.0) + v * v * q)


@_jit
def goldstein_price_value_and_grad_into(x, g):
    """Value of :func:`goldstein_price`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    two = T(2.0)
    X = x[0]
    Y = x[1]
    u = X + Y + T(1.0)
    p = (T(19.0) - T(14.0) * X + T(3.0) * X * X - T(14.0) * Y
         + T(6.0) * X * Y + T(3.0) * Y * Y)
    dp = T(-14.0) + T(6.0) * X + T(6.0) * Y  # dp/dx == dp/dy
    v = T(2.0) * X - T(3.0) * Y
    q = (T(18.0) - T(32.0) * X + T(12.0) * X * X + T(48.0) * Y
         - T(36.0) * X * Y + T(27.0) * Y * Y)
    dqx = T(-32.0) + T(24.0) * X - T(36.0) * Y
    dqy = T(48.0) - T(36.0) * X + T(54.0) * Y
    A = T(1.0) + u * u * p
    B = T(30.0) + v * v * q
    dA = two * u * p + u * u * dp  # same for x and y
    dBx = T(4.0) * v * q + v * v * dqx
    dBy = T(-6.0) * v * q + v * v * dqy
    g[0] = dA * B + A * dBx
    g[1] = dA * B + A * dBy
    return A * B


@_jit
def goldstein_price_value_and_grad(x):
    """Value and gradient of :func:`goldstein_price`."""
    g = np.empty_like(x)
    return goldstein_price_value_and_grad_into(x, g), g


@_jit
def goldstein_price_grad(x):
    """Gradient of :func:`goldstein_price`."""
    return goldstein_price_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# three_hump_camel
# ---------------------------------------------------------------------------


@_jit
def three_hump_camel(x):
    """Three-hump camel ``2x**2 - 1.05x**4 + x**6/6 + xy + y**2``."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    x2 = X * X
    x4 = x2 * x2
    return T(2.0) * x2 - T(1.05) * x4 + x4 * x2 / T(6.0) + X * Y + Y * Y


@_jit
def three_hump_camel_value_and_grad_into(x, g):
    """Value of :func:`three_hump_camel`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    x2 = X * X
    x4 = x2 * x2
    f = T(2.0) * x2 - T(1.05) * x4 + x4 * x2 / T(6.0) + X * Y + Y * Y
    g[0] = T(4.0) * X - T(4.2) * x2 * X + x4 * X + Y
    g[1] = X + T(2.0) * Y
    return f


@_jit
def three_hump_camel_value_and_grad(x):
    """Value and gradient of :func:`three_hump_camel`."""
    g = np.empty_like(x)
    return three_hump_camel_value_and_grad_into(x, g), g


@_jit
def three_hump_camel_grad(x):
    """Gradient of :func:`three_hump_camel`."""
    return three_hump_camel_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# matyas
# ---------------------------------------------------------------------------


@_jit
def matyas(x):
    """Matyas ``0.26 (x**2 + y**2) - 0.48 x y``."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    return T(0.26) * (X * X + Y * Y) - T(0.48) * X * Y


@_jit
def matyas_value_and_grad_into(x, g):
    """Value of :func:`matyas`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    X = x[0]
    Y = x[1]
    g[0] = T(0.52) * X - T(0.48) * Y
    g[1] = T(0.52) * Y - T(0.48) * X
    return T(0.26) * (X * X + Y * Y) - T(0.48) * X * Y


@_jit
def matyas_value_and_grad(x):
    """Value and gradient of :func:`matyas`."""
    g = np.empty_like(x)
    return matyas_value_and_grad_into(x, g), g


@_jit
def matyas_grad(x):
    """Gradient of :func:`matyas`."""
    return matyas_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# easom
# ---------------------------------------------------------------------------


@_jit
def easom(x):
    """Easom ``-cos(x) cos(y) exp(-((x - pi)**2 + (y - pi)**2))``."""
    _check_2d(x)
    T = x.dtype.type
    pi = T(math.pi)
    dx = x[0] - pi
    dy = x[1] - pi
    return -np.cos(x[0]) * np.cos(x[1]) * np.exp(-(dx * dx + dy * dy))


@_jit
def easom_value_and_grad_into(x, g):
    """Value of :func:`easom`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    pi = T(math.pi)
    two = T(2.0)
    dx = x[0] - pi
    dy = x[1] - pi
    E = np.exp(-(dx * dx + dy * dy))
    cx = np.cos(x[0])
    cy = np.cos(x[1])
    g[0] = E * cy * (np.sin(x[0]) + two * dx * cx)
    g[1] = E * cx * (np.sin(x[1]) + two * dy * cy)
    return -cx * cy * E


@_jit
def easom_value_and_grad(x):
    """Value and gradient of :func:`easom`."""
    g = np.empty_like(x)
    return easom_value_and_grad_into(x, g), g


@_jit
def easom_grad(x):
    """Gradient of :func:`easom`."""
    return easom_value_and_grad(x)[1]


# ---------------------------------------------------------------------------
# levi13
# ---------------------------------------------------------------------------


@_jit
def levi13(x):
    """Levi N.13 ``sin(3pi x)**2 + (x-1)**2 (1 + sin(3pi y)**2) + (y-1)**2 (1 + sin(2pi y)**2)``."""
    _check_2d(x)
    T = x.dtype.type
    one = T(1.0)
    w3 = T(3.0 * math.pi)
    w2 = T(2.0 * math.pi)
    X = x[0]
    Y = x[1]
    s3x = np.sin(w3 * X)
    s3y = np.sin(w3 * Y)
    s2y = np.sin(w2 * Y)
    dx = X - one
    dy = Y - one
    return s3x * s3x + dx * dx * (one + s3y * s3y) + dy * dy * (one + s2y * s2y)


@_jit
def levi13_value_and_grad_into(x, g):
    """Value of :func:`levi13`; its gradient is written into ``g`` (shape of ``x``)."""
    _check_2d(x)
    T = x.dtype.type
    one = T(1.0)
    two = T(2.0)
    w3 = T(3.0 * math.pi)
    w2 = T(2.0 * math.pi)
    X = x[0]
    Y = x[1]
    s3x = np.sin(w3 * X)
    c3x = np.cos(w3 * X)
    s3y = np.sin(w3 * Y)
    c3y = np.cos(w3 * Y)
    s2y = np.sin(w2 * Y)
    c2y = np.cos(w2 * Y)
    dx = X - one
    dy = Y - one
    f = s3x * s3x + dx * dx * (one + s3y * s3y) + dy * dy * (one + s2y * s2y)
    # d/dt sin(w t)**2 = 2 w sin(w t) cos(w t)
    g[0] = two * w3 * s3x * c3x + two * dx * (one + s3y * s3y)
    g[1] = (dx * dx * two * w3 * s3y * c3y
            + two * dy * (one + s2y * s2y)
            + dy * dy * two * w2 * s2y * c2y)
    return f


@_jit
def levi13_value_and_grad(x):
    """Value and gradient of :func:`levi13`."""
    g = np.empty_like(x)
    return levi13_value_and_grad_into(x, g), g


@_jit
def levi13_grad(x):
    """Gradient of :func:`levi13`."""
    return levi13_value_and_grad(x)[1]


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
        Jitted objective ``fun(x) -> float`` for a 1-D float array ``x``.
    grad : callable
        Jitted gradient ``grad(x) -> ndarray`` (new array, dtype of ``x``).
    value_and_grad : callable
        Jitted ``value_and_grad(x) -> (float, ndarray)``.
    value_and_grad_into : callable
        Jitted ``value_and_grad_into(x, g) -> float``: the same value, with the
        same gradient written into ``g`` instead of a new array (``grad.into``
        and ``value_and_grad.into`` name it, for :func:`adamnb.minimize`).
    dim : int or None
        Dimension of a fixed-dimension problem, ``None`` for a scalable
        (``n``-dimensional) one.  The dimension of this particular instance
        is :attr:`n`.
    domain : tuple of float
        ``(lower, upper)`` bounds, the same for every coordinate.
    fmin : float
        Global minimum value (for this instance's dimension).
    minimizers : ndarray, shape (k, n)
        All known global minimisers, one per row (read-only, float64).
    x0 : ndarray, shape (n,)
        Standard starting point (read-only, float64).
    description : str
        One-line formula.

    Notes
    -----
    Instances are immutable; use :meth:`with_dim` (or :func:`get`) to obtain
    a scalable problem in another dimension.
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
            The instance for dimension ``n`` with ``fmin``, ``minimizers``
            and ``x0`` adapted to ``n``.

        Raises
        ------
        ValueError
            If the problem has a fixed dimension different from ``n``, or
            ``n`` is below the smallest dimension the problem supports.
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
        """Euclidean distance from ``x`` to the nearest known global minimiser."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.shape[0] != self.n:
            raise ValueError(
                f"x has {x.shape[0]} coordinates but {self.name!r} instance is "
                f"{self.n}-dimensional"
            )
        return float(np.min(np.linalg.norm(self.minimizers - x, axis=1)))


def _fixed(name, fun, grad, vg, into, domain, fmin, minimizers, x0, description):
    minimizers = np.atleast_2d(np.asarray(minimizers, dtype=np.float64))
    return TestFunction(
        name=name, fun=fun, grad=grad, value_and_grad=vg, value_and_grad_into=into,
        dim=int(minimizers.shape[1]), domain=domain, fmin=fmin,
        minimizers=minimizers, x0=x0, description=description,
    )


def _scalable(name, fun, grad, vg, into, domain, fmin_1, xmin_1, x0_fn, description,
              min_dim=1):
    """Build a cached factory ``n -> TestFunction`` for an n-D problem.

    ``fmin_1`` and ``xmin_1`` are the minimum value and minimiser per
    coordinate (the minimum value scales as ``n * fmin_1``); ``x0_fn(n)``
    returns the start.
    """

    @lru_cache(maxsize=None)
    def factory(n):
        return TestFunction(
            name=name, fun=fun, grad=grad, value_and_grad=vg, value_and_grad_into=into, dim=None,
            domain=domain, fmin=(n * fmin_1 if fmin_1 != 0.0 else 0.0),
            minimizers=np.full((1, n), xmin_1), x0=x0_fn(n),
            description=description, _factory=factory, _min_dim=min_dim,
        )

    return factory(2)


def _rosenbrock_x0(n):
    x0 = np.ones(n)
    x0[0::2] = -1.2
    return x0


_ENTRIES = (
    _scalable(
        "quadratic", quadratic, quadratic_grad, quadratic_value_and_grad,
        quadratic_value_and_grad_into,
        (-10.0, 10.0), 0.0, 0.0, lambda n: np.ones(n),
        "f(x) = 0.5 * sum_i kappa**(i/(n-1)) * x_i**2, kappa = 1e3",
    ),
    _scalable(
        "rosenbrock", rosenbrock, rosenbrock_grad, rosenbrock_value_and_grad,
        rosenbrock_value_and_grad_into,
        (-5.0, 10.0), 0.0, 1.0, _rosenbrock_x0,
        "f(x) = sum_{i<n-1} 100*(x_{i+1} - x_i**2)**2 + (1 - x_i)**2",
        min_dim=2,
    ),
    _fixed(
        "beale", beale, beale_grad, beale_value_and_grad, beale_value_and_grad_into,
        (-4.5, 4.5), 0.0, [[3.0, 0.5]], [1.0, 1.0],
        "f(x, y) = (1.5 - x + x*y)**2 + (2.25 - x + x*y**2)**2 "
        "+ (2.625 - x + x*y**3)**2",
    ),
    _fixed(
        "booth", booth, booth_grad, booth_value_and_grad, booth_value_and_grad_into,
        (-10.0, 10.0), 0.0, [[1.0, 3.0]], [0.0, 0.0],
        "f(x, y) = (x + 2*y - 7)**2 + (2*x + y - 5)**2",
    ),
    _fixed(
        "himmelblau", himmelblau, himmelblau_grad, himmelblau_value_and_grad,
        himmelblau_value_and_grad_into,
        (-5.0, 5.0), 0.0, _HIMMELBLAU_MINIMIZERS, [0.0, 0.0],
        "f(x, y) = (x**2 + y - 11)**2 + (x + y**2 - 7)**2",
    ),
    _scalable(
        "rastrigin", rastrigin, rastrigin_grad, rastrigin_value_and_grad,
        rastrigin_value_and_grad_into,
        (-5.12, 5.12), 0.0, 0.0, lambda n: np.full(n, 3.0),
        "f(x) = 10*n + sum_i (x_i**2 - 10*cos(2*pi*x_i))",
    ),
    _scalable(
        "ackley", ackley, ackley_grad, ackley_value_and_grad, ackley_value_and_grad_into,
        (-32.768, 32.768), 0.0, 0.0, lambda n: np.full(n, 2.5),
        "f(x) = -20*exp(-0.2*sqrt(mean(x**2))) - exp(mean(cos(2*pi*x))) + 20 + e",
    ),
    _scalable(
        "styblinski_tang", styblinski_tang, styblinski_tang_grad,
        styblinski_tang_value_and_grad, styblinski_tang_value_and_grad_into,
        (-5.0, 5.0), _ST_FMIN, _ST_XMIN, lambda n: np.zeros(n),
        "f(x) = 0.5 * sum_i (x_i**4 - 16*x_i**2 + 5*x_i)",
    ),
    _fixed(
        "goldstein_price", goldstein_price, goldstein_price_grad,
        goldstein_price_value_and_grad, goldstein_price_value_and_grad_into,
        (-2.0, 2.0), 3.0, [[0.0, -1.0]], [0.5, -1.5],
        "f(x, y) = [1 + (x+y+1)**2 (19 - 14x + 3x**2 - 14y + 6xy + 3y**2)] "
        "* [30 + (2x-3y)**2 (18 - 32x + 12x**2 + 48y - 36xy + 27y**2)]",
    ),
    _fixed(
        "three_hump_camel", three_hump_camel, three_hump_camel_grad,
        three_hump_camel_value_and_grad, three_hump_camel_value_and_grad_into,
        (-5.0, 5.0), 0.0, [[0.0, 0.0]], [-1.0, -1.0],
        "f(x, y) = 2*x**2 - 1.05*x**4 + x**6/6 + x*y + y**2",
    ),
    _fixed(
        "matyas", matyas, matyas_grad, matyas_value_and_grad, matyas_value_and_grad_into,
        (-10.0, 10.0), 0.0, [[0.0, 0.0]], [5.0, -3.0],
        "f(x, y) = 0.26*(x**2 + y**2) - 0.48*x*y",
    ),
    _fixed(
        "easom", easom, easom_grad, easom_value_and_grad, easom_value_and_grad_into,
        (-100.0, 100.0), -1.0, [[math.pi, math.pi]], [2.0, 2.5],
        "f(x, y) = -cos(x)*cos(y)*exp(-((x - pi)**2 + (y - pi)**2))",
    ),
    _fixed(
        "levi13", levi13, levi13_grad, levi13_value_and_grad, levi13_value_and_grad_into,
        (-10.0, 10.0), 0.0, [[1.0, 1.0]], [-2.0, 3.0],
        "f(x, y) = sin(3*pi*x)**2 + (x-1)**2*(1 + sin(3*pi*y)**2) "
        "+ (y-1)**2*(1 + sin(2*pi*y)**2)",
    ),
)

# The allocation-free protocol of adamnb.minimize's compiled loop (adamnb.optimize._compiled): a jitted
# gradient names, as ``.into``, the function that writes the same gradient into a given buffer.
for _tf in _ENTRIES:
    _tf.value_and_grad.into = _tf.value_and_grad_into
    _tf.grad.into = _tf.value_and_grad_into
del _tf

#: All test problems (2-D instances), keyed by name, in a fixed order.
FUNCTIONS = {tf.name: tf for tf in _ENTRIES}


def get(name: str, n: Optional[int] = None) -> TestFunction:
    """Look up a test problem by name, optionally in dimension ``n``.

    Parameters
    ----------
    name : str
        One of the keys of :data:`FUNCTIONS`.
    n : int, optional
        Dimension.  ``None`` gives the default (2-D) instance.  Fixed
        dimension problems only accept their own dimension.

    Returns
    -------
    TestFunction

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names) or an
        unsupported dimension.
    """
    try:
        tf = FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown test function {name!r}; valid names are: "
            + ", ".join(FUNCTIONS)
        ) from None
    if n is None:
        return tf
    return tf.with_dim(n)
