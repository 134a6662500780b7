"""Tests for :mod:`adamnb.problems.functions` against independent references."""

import dataclasses
import math

import numpy as np
import pytest
from scipy.optimize import check_grad, minimize, rosen, rosen_der

from adamnb.problems.functions import FUNCTIONS, QUADRATIC_KAPPA, TestFunction, get

NAMES = [
    "quadratic", "rosenbrock", "beale", "booth", "himmelblau", "rastrigin",
    "ackley", "styblinski_tang", "goldstein_price", "three_hump_camel",
    "matyas", "easom", "levi13",
]
SCALABLE = [name for name in NAMES if FUNCTIONS[name].dim is None]

# Every function in 2-D, plus the scalable ones in 5-D.
CASES = [(name, None) for name in NAMES] + [(name, 5) for name in SCALABLE]
CASE_IDS = [f"{name}-{n or 2}d" for name, n in CASES]


def _random_points(tf, count, seed):
    rng = np.random.default_rng(seed)
    lo, hi = tf.domain
    return rng.uniform(lo, hi, size=(count, tf.n))


# ---------------------------------------------------------------------------
# Independent NumPy reference implementations (written from the formulas in
# Surjanovic & Bingham's Virtual Library of Simulation Experiments).
# ---------------------------------------------------------------------------


def _ref_quadratic(x):
    n = x.size
    c = QUADRATIC_KAPPA ** (np.arange(n) / (n - 1)) if n > 1 else np.ones(1)
    return 0.5 * np.sum(c * x**2)


def _ref_rastrigin(x):
    return 10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x))


def _ref_ackley(x):
    d = x.size
    return (-20 * np.exp(-0.2 * np.sqrt(np.sum(x**2) / d))
            - np.exp(np.sum(np.cos(2 * np.pi * x)) / d) + 20 + np.e)


def _ref_styblinski_tang(x):
    return np.sum(x**4 - 16 * x**2 + 5 * x) / 2


def _ref_goldstein_price(v):
    x, y = v
    fact1a = (x + y + 1) ** 2
    fact1b = 19 - 14 * x + 3 * x**2 - 14 * y + 6 * x * y + 3 * y**2
    fact2a = (2 * x - 3 * y) ** 2
    fact2b = 18 - 32 * x + 12 * x**2 + 48 * y - 36 * x * y + 27 * y**2
    return (1 + fact1a * fact1b) * (30 + fact2a * fact2b)


REFERENCE = {
    "quadratic": _ref_quadratic,
    "rosenbrock": rosen,
    "beale": lambda v: ((1.5 - v[0] + v[0] * v[1]) ** 2
                        + (2.25 - v[0] + v[0] * v[1] ** 2) ** 2
                        + (2.625 - v[0] + v[0] * v[1] ** 3) ** 2),
    "booth": lambda v: (v[0] + 2 * v[1] - 7) ** 2 + (2 * v[0] + v[1] - 5) ** 2,
    "himmelblau": lambda v: (v[0]**2 + v[1] - 11) ** 2 + (v[0] + v[1]**2 - 7) ** 2,
    "rastrigin": _ref_rastrigin,
    "ackley": _ref_ackley,
    "styblinski_tang": _ref_styblinski_tang,
    "goldstein_price": _ref_goldstein_price,
    "three_hump_camel": lambda v: (2 * v[0]**2 - 1.05 * v[0]**4 + v[0]**6 / 6
                                   + v[0] * v[1] + v[1]**2),
    "matyas": lambda v: 0.26 * (v[0]**2 + v[1]**2) - 0.48 * v[0] * v[1],
    "easom": lambda v: (-np.cos(v[0]) * np.cos(v[1])
                        * np.exp(-(v[0] - np.pi) ** 2 - (v[1] - np.pi) ** 2)),
    "levi13": lambda v: (np.sin(3 * np.pi * v[0]) ** 2
                         + (v[0] - 1) ** 2 * (1 + np.sin(3 * np.pi * v[1]) ** 2)
                         + (v[1] - 1) ** 2 * (1 + np.sin(2 * np.pi * v[1]) ** 2)),
}


# ---------------------------------------------------------------------------
# Registry and metadata
# ---------------------------------------------------------------------------


def test_registry_names_and_order():
    assert list(FUNCTIONS) == NAMES
    assert set(REFERENCE) == set(NAMES)
    for name, tf in FUNCTIONS.items():
        assert isinstance(tf, TestFunction)
        assert tf.name == name
        assert get(name) is tf
        assert tf.n == 2  # the registry holds the 2-D instances
        assert tf.description and "\n" not in tf.description


def test_scalable_and_fixed_dimensions():
    assert SCALABLE == ["quadratic", "rosenbrock", "rastrigin", "ackley",
                        "styblinski_tang"]
    for name in NAMES:
        tf = FUNCTIONS[name]
        if name not in SCALABLE:
            assert tf.dim == 2


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_metadata_consistent(name, n):
    tf = get(name, n)
    n = n or 2
    lo, hi = tf.domain
    assert isinstance(lo, float) and isinstance(hi, float) and lo < hi
    assert isinstance(tf.fmin, float)
    assert tf.minimizers.dtype == np.float64 and tf.minimizers.ndim == 2
    assert tf.minimizers.shape[1] == n and tf.minimizers.shape[0] >= 1
    assert tf.x0.dtype == np.float64 and tf.x0.shape == (n,)
    assert np.all((tf.minimizers >= lo) & (tf.minimizers <= hi))
    assert np.all((tf.x0 >= lo) & (tf.x0 <= hi))
    # the start is not a minimiser and has a usable gradient
    assert tf.fun(tf.x0) > tf.fmin + 1e-3
    assert np.linalg.norm(tf.grad(tf.x0)) > 1e-2
    assert tf.nearest_minimizer_distance(tf.x0) > 0.1


def test_documented_starts():
    assert np.array_equal(get("rosenbrock").x0, [-1.2, 1.0])
    assert np.array_equal(get("rosenbrock", 5).x0, [-1.2, 1.0, -1.2, 1.0, -1.2])
    assert np.array_equal(get("quadratic", 4).x0, np.ones(4))
    assert np.array_equal(get("beale").x0, [1.0, 1.0])
    assert np.array_equal(get("booth").x0, [0.0, 0.0])
    assert np.array_equal(get("himmelblau").x0, [0.0, 0.0])
    assert np.array_equal(get("styblinski_tang", 3).x0, np.zeros(3))


def test_with_dim_scales_metadata():
    st = get("styblinski_tang", 5)
    assert st.dim is None and st.n == 5
    assert st.fmin == pytest.approx(5 * -39.16616570377142, rel=1e-14)
    assert st.minimizers.shape == (1, 5)
    assert np.allclose(st.minimizers, -2.903534027771178, rtol=1e-14)
    rb = FUNCTIONS["rosenbrock"].with_dim(7)
    assert np.array_equal(rb.minimizers, np.ones((1, 7)))
    assert rb.fmin == 0.0
    # instances are cached and round-trip
    assert get("rosenbrock", 7) is rb
    assert rb.with_dim(2) is FUNCTIONS["rosenbrock"]
    assert get("ackley", 2) is FUNCTIONS["ackley"]
    assert FUNCTIONS["beale"].with_dim(2) is FUNCTIONS["beale"]


def test_instances_are_immutable():
    tf = get("booth")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tf.fmin = 1.0
    with pytest.raises(ValueError):
        tf.x0[0] = 5.0
    with pytest.raises(ValueError):
        tf.minimizers[0, 0] = 5.0


def test_nearest_minimizer_distance():
    hb = get("himmelblau")
    assert hb.nearest_minimizer_distance([3.0, 2.0]) == 0.0
    x = np.array([-3.0, -3.0])
    expected = min(math.dist(x, m) for m in hb.minimizers)
    assert hb.nearest_minimizer_distance(x) == pytest.approx(expected, rel=1e-14)
    assert expected == pytest.approx(math.hypot(-3.0 + 3.779310253377747,
                                                -3.0 + 3.2831859912861696))
    assert get("rosenbrock", 4).nearest_minimizer_distance(np.zeros(4)) == 2.0
    with pytest.raises(ValueError):
        hb.nearest_minimizer_distance(np.zeros(3))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get("rosenbrok")
    msg = str(info.value)
    assert "rosenbrok" in msg
    for name in NAMES:
        assert name in msg
    with pytest.raises(ValueError, match="valid names are"):
        get(3)


def test_names_are_looked_up_in_any_case():
    assert get("Rosenbrock") is get("ROSENBROCK") is get("rosenbrock")
    assert get("Styblinski_Tang", n=3).n == 3


@pytest.mark.parametrize("name", [n for n in NAMES if n not in SCALABLE])
def test_fixed_dimension_rejects_other_n(name):
    for n in (1, 3, 5):
        with pytest.raises(ValueError, match=rf"{name}.*2-dimensional"):
            get(name, n)
        with pytest.raises(ValueError, match=name):
            FUNCTIONS[name].with_dim(n)
    # and the compiled functions reject points of the wrong size
    for fn in (FUNCTIONS[name].fun, FUNCTIONS[name].grad,
               FUNCTIONS[name].value_and_grad):
        with pytest.raises(ValueError):
            fn(np.zeros(3))


def test_scalable_rejects_too_small_n():
    with pytest.raises(ValueError, match="rosenbrock"):
        get("rosenbrock", 1)
    with pytest.raises(ValueError, match="ackley"):
        get("ackley", 0)
    with pytest.raises(TypeError):
        get("ackley", 2.5)


# ---------------------------------------------------------------------------
# Values and gradients
# ---------------------------------------------------------------------------


def _points_near_interesting_places(tf, count, seed):
    """Points within +-2 of the minimisers / the start (clipped to the domain).

    Uniform points alone say little for functions such as Easom, which are
    flat almost everywhere in their domain.
    """
    rng = np.random.default_rng(seed)
    lo, hi = tf.domain
    centres = np.vstack([tf.minimizers, tf.x0])
    pts = (centres[rng.integers(len(centres), size=count)]
           + rng.uniform(-2.0, 2.0, size=(count, tf.n)))
    return np.clip(pts, lo, hi)


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_gradient_matches_finite_differences(name, n):
    tf = get(name, n)
    points = np.vstack([_random_points(tf, 8, seed=1234),
                        _points_near_interesting_places(tf, 8, seed=4321)])
    for x in points:
        g = tf.grad(x)
        # check_grad uses forward differences (step ~1.5e-8): their error is
        # ~1e-8 * |f''|, up to ~1e-5 relative for the strongly curved
        # Levi N.13, while a wrong gradient is off by O(1).
        err = check_grad(tf.fun, tf.grad, x)
        assert err / max(1.0, np.linalg.norm(g)) < 2e-5, (x, err, g)


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_value_and_grad_consistent(name, n):
    tf = get(name, n)
    for x in _random_points(tf, 5, seed=99):
        x_before = x.copy()
        f, g = tf.value_and_grad(x)
        assert f == pytest.approx(tf.fun(x), rel=1e-13, abs=1e-13)
        np.testing.assert_allclose(g, tf.grad(x), rtol=1e-13, atol=1e-13)
        assert g is not x and not np.shares_memory(g, x)
        np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_values_match_reference_formula(name, n):
    tf = get(name, n)
    ref = REFERENCE[name]
    for x in _random_points(tf, 10, seed=7):
        assert tf.fun(x) == pytest.approx(ref(x), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n", [2, 6])
def test_rosenbrock_matches_scipy(n):
    tf = get("rosenbrock", n)
    rng = np.random.default_rng(n)
    for x in rng.uniform(-2, 2, size=(10, n)):
        assert tf.fun(x) == pytest.approx(rosen(x), rel=1e-13)
        np.testing.assert_allclose(tf.grad(x), rosen_der(x), rtol=1e-12, atol=1e-12)
        f, g = tf.value_and_grad(x)
        assert f == pytest.approx(rosen(x), rel=1e-13)
        np.testing.assert_allclose(g, rosen_der(x), rtol=1e-12, atol=1e-12)


def test_literature_values():
    def f(name, *x):
        return get(name, len(x)).fun(np.array(x, dtype=np.float64))

    assert f("goldstein_price", 0.0, -1.0) == pytest.approx(3.0, rel=1e-15)
    assert f("goldstein_price", 0.0, 0.0) == pytest.approx(600.0, rel=1e-15)
    assert f("easom", math.pi, math.pi) == pytest.approx(-1.0, rel=1e-15)
    assert f("rosenbrock", -1.2, 1.0) == pytest.approx(24.2, rel=1e-14)
    assert f("beale", 0.0, 0.0) == pytest.approx(14.203125, rel=1e-15)
    assert f("booth", 0.0, 0.0) == pytest.approx(74.0, rel=1e-15)
    assert f("himmelblau", 0.0, 0.0) == pytest.approx(170.0, rel=1e-15)
    assert f("matyas", 1.0, 1.0) == pytest.approx(0.04, rel=1e-14)
    assert f("three_hump_camel", 1.0, 1.0) == pytest.approx(2 - 1.05 + 1 / 6 + 2)
    assert f("rastrigin", 1.0, 1.0, 1.0) == pytest.approx(3.0, abs=1e-12)
    assert f("rastrigin", 0.5, 0.5) == pytest.approx(40.5, rel=1e-14)
    assert f("levi13", 0.0, 0.0) == pytest.approx(2.0, abs=1e-12)
    # Surjanovic & Bingham quote -39.16599 d (rounded minimiser -2.903534)
    assert f("styblinski_tang", -2.903534, -2.903534) == pytest.approx(
        2 * -39.16616570377142, rel=1e-12)
    assert f("ackley", 1.0, 1.0) == pytest.approx(
        -20 * math.exp(-0.2) - math.exp(1.0) + 20 + math.e, rel=1e-14)


def test_quadratic_conditioning():
    for n in (2, 3, 10):
        tf = get("quadratic", n)
        # the Hessian is diag(c); recover it column by column from the gradient
        hess_diag = np.array([tf.grad(e)[i] for i, e in enumerate(np.eye(n))])
        assert hess_diag[0] == 1.0
        assert hess_diag[-1] == pytest.approx(QUADRATIC_KAPPA, rel=1e-14)
        assert np.all(np.diff(hess_diag) > 0)
    assert QUADRATIC_KAPPA == 1e3
    assert get("quadratic", 1).fun(np.array([2.0])) == 2.0


def test_ackley_gradient_at_origin():
    for n in (1, 2, 5):
        tf = get("ackley", n)
        x = np.zeros(n)
        g = tf.grad(x)
        assert np.all(g == 0.0)
        assert tf.fun(x) == 0.0
        # finite and small but non-zero just off the origin
        g = tf.grad(np.full(n, 1e-300))
        assert np.all(np.isfinite(g)) and np.all(g > 0)


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_minimizers_are_stationary_with_value_fmin(name, n):
    tf = get(name, n)
    for m in tf.minimizers:
        f, g = tf.value_and_grad(m)
        assert tf.fun(m) == f
        assert abs(f - tf.fmin) <= 1e-10 * max(1.0, abs(tf.fmin))
        assert np.linalg.norm(g) < 1e-8


def test_himmelblau_has_four_distinct_minimizers():
    hb = get("himmelblau")
    m = hb.minimizers
    assert m.shape == (4, 2)
    np.testing.assert_allclose(
        np.sort(m[:, 0]), [-3.779310, -2.805118, 3.0, 3.584428], atol=1e-6)
    assert min(np.linalg.norm(m[i] - m[j])
               for i in range(4) for j in range(i)) > 1.0


@pytest.mark.parametrize("name,n", [(name, None) for name in NAMES]
                         + [(name, 3) for name in SCALABLE],
                         ids=[f"{name}-2d" for name in NAMES]
                         + [f"{name}-3d" for name in SCALABLE])
def test_minimum_is_global_in_practice(name, n):
    tf = get(name, n)
    lo, hi = tf.domain
    # a coarse grid of starts over the domain, plus the standard start and
    # perturbed minimisers (so that the minimum itself is also reached)
    ticks = np.linspace(lo, hi, 7 if tf.n == 2 else 4)
    grid = np.stack(np.meshgrid(*[ticks] * tf.n), axis=-1).reshape(-1, tf.n)
    rng = np.random.default_rng(5)
    near = tf.minimizers + 0.05 * rng.standard_normal(tf.minimizers.shape)
    starts = np.vstack([grid, tf.x0, np.clip(near, lo, hi)])
    best = np.inf
    for x0 in starts:
        res = minimize(tf.fun, x0, jac=tf.grad, method="L-BFGS-B",
                       bounds=tf.bounds)
        assert res.fun >= tf.fmin - 1e-8, (x0, res.x, res.fun)
        best = min(best, res.fun)
    assert best <= tf.fmin + 1e-6
    # nothing below fmin on a dense random sample of the domain either
    sample = _random_points(tf, 2000, seed=11)
    assert min(tf.fun(x) for x in sample) >= tf.fmin - 1e-8


# ---------------------------------------------------------------------------
# dtypes and memory layout
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_float32_input(name, n):
    tf = get(name, n)
    points = np.vstack([tf.x0, _random_points(tf, 4, seed=3)])
    for x64 in points:
        x32 = x64.astype(np.float32)
        # compare with the float64 evaluation at the same (rounded) point
        x64 = x32.astype(np.float64)
        g32 = tf.grad(x32)
        f32, g32b = tf.value_and_grad(x32)
        assert g32.dtype == np.float32 and g32b.dtype == np.float32
        assert g32.shape == x32.shape
        assert np.isscalar(tf.fun(x32)) and np.isscalar(f32)
        f64, g64 = tf.value_and_grad(x64)
        assert f32 == pytest.approx(f64, rel=1e-4, abs=1e-4 * max(1.0, abs(f64)))
        scale = max(1.0, np.linalg.norm(g64))
        assert np.linalg.norm(g32 - g64) / scale < 1e-3
        np.testing.assert_array_equal(g32, g32b)


@pytest.mark.parametrize("name", NAMES)
def test_float64_result_types_and_strided_input(name):
    tf = get(name)
    buf = np.zeros(2 * tf.n)
    buf[::2] = tf.x0
    x = buf[::2]  # non-contiguous view
    f, g = tf.value_and_grad(x)
    assert isinstance(f, float)
    assert g.dtype == np.float64 and g.shape == (tf.n,)
    assert f == tf.fun(np.ascontiguousarray(x))
    np.testing.assert_array_equal(g, tf.grad(np.ascontiguousarray(x)))


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_into_variant_gives_the_same_bits_without_allocating(name, n):
    tf = get(name, n)
    assert tf.value_and_grad.into is tf.value_and_grad_into
    assert tf.grad.into is tf.value_and_grad_into
    points = np.vstack([tf.x0, tf.minimizers, _random_points(tf, 6, seed=11)])
    for dtype in (np.float64, np.float32):
        for x in points.astype(dtype):
            f, g = tf.value_and_grad(x)
            out = np.full_like(x, np.nan)
            f_into = tf.value_and_grad_into(x, out)
            assert np.float64(f_into).tobytes() == np.float64(f).tobytes()
            assert out.tobytes() == g.tobytes() == tf.grad(x).tobytes()


def test_rosenbrock_gradient_keeps_the_signed_zeros_of_an_accumulated_sum():
    """g[i] = (0 + 200 a_{i-1}) + (-400 x_i a_i - 2 b_i), as summed into a zeroed array: at the
    minimiser every term is a (signed) zero and the sums are +0."""
    g = get("rosenbrock", 4).grad(np.ones(4))
    assert not np.signbit(g).any() and (g == 0).all()


# ---------------------------------------------------------------------------
# Integer and bool points: computed in float64, as NumPy promotes them
# ---------------------------------------------------------------------------

# Every problem with int64 and bool points; other integer dtypes on two problems (each dtype is
# one more compilation of every function).
INTEGER_CASES = ([(name, None, dtype) for name in NAMES for dtype in (np.int64, np.bool_)]
                 + [(name, 3, dtype) for name in SCALABLE for dtype in (np.int64, np.bool_)]
                 + [(name, None, dtype) for name in ("rosenbrock", "matyas")
                    for dtype in (np.int32, np.uint8)])


def _integer_points(tf, dtype):
    """Small integer points of the domain (0/1 for bool), including the standard start."""
    if dtype is np.bool_:
        return np.array([[1, 0], [0, 1], [1, 1]] if tf.n == 2 else [[1, 0, 1]], dtype=bool)
    lo, hi = np.ceil(tf.domain[0]), np.floor(tf.domain[1])
    rng = np.random.default_rng(17)
    points = rng.integers(max(lo, 0 if dtype is np.uint8 else lo), min(hi, 3) + 1,
                          size=(4, tf.n))
    return np.vstack([points, np.round(tf.x0)]).astype(dtype)


@pytest.mark.parametrize("name,n,dtype", INTEGER_CASES,
                         ids=[f"{name}-{n or 2}d-{np.dtype(dtype).name}"
                              for name, n, dtype in INTEGER_CASES])
def test_integer_and_bool_points_give_the_float_answer(name, n, dtype):
    """Matyas at np.array([5, -3]) gave f = 0, g = [0, 0] (integer arithmetic); the answer at
    [5.0, -3.0] is 16.04, [4.04, -3.96]. Every public function now computes in float64."""
    tf = get(name, n)
    for x in _integer_points(tf, dtype):
        x_float = x.astype(np.float64)
        f, g = tf.value_and_grad(x_float)
        f_int, g_int = tf.value_and_grad(x)
        g_grad = tf.grad(x)
        g_into = np.full(tf.n, np.nan)
        f_into = tf.value_and_grad_into(x, g_into)
        assert g_int.dtype == g_grad.dtype == np.float64
        assert type(tf.fun(x)) is float
        for value in (tf.fun(x), f_int, f_into):
            assert np.float64(value).tobytes() == np.float64(f).tobytes(), (x, value, f)
        for gradient in (g_int, g_grad, g_into):
            assert gradient.tobytes() == g.tobytes(), (x, gradient, g)
        # and the float answer is the reference formula's
        assert f == pytest.approx(REFERENCE[name](x_float), rel=1e-12, abs=1e-12)


def test_matyas_at_an_integer_point_is_the_issue_17_example():
    from adamnb.problems import functions
    f, g = functions.matyas_value_and_grad(np.array([5, -3]))
    assert f == pytest.approx(16.04, rel=1e-15)
    np.testing.assert_allclose(g, [4.04, -3.96], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["rosenbrock", "matyas", "ackley"])
def test_a_gradient_buffer_that_is_not_float_is_refused(name, dtype):
    """An integer g would receive a truncated gradient: refused, naming the problem."""
    tf = get(name)
    g = np.zeros(2, dtype=dtype)
    with pytest.raises(TypeError, match=r"g must be .*float32 or float64"):
        tf.value_and_grad_into(tf.x0.copy(), g)
    assert not g.any()


@pytest.mark.filterwarnings("ignore::numba.NumbaPendingDeprecationWarning")  # the list, typed
@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "beale", "ackley"])
def test_bad_arguments_raise_clear_errors(name):
    tf = get(name)
    x = np.array(tf.x0)
    callables = (tf.fun, tf.grad, tf.value_and_grad,
                 lambda point: tf.value_and_grad_into(point, np.zeros(2)))
    for call in callables:
        with pytest.raises(TypeError, match="x must be a NumPy array"):
            call([1.0, 2.0])
        with pytest.raises(TypeError, match="x must be a NumPy array"):
            call(1.5)
        with pytest.raises(TypeError, match="real numbers, got dtype complex128"):
            call(x.astype(np.complex128))
        with pytest.raises(ValueError, match="x must be 1-D, got 2 dimensions"):
            call(x.reshape(1, 2))
    if tf.dim is not None:
        for call in callables:
            with pytest.raises(ValueError, match=rf"{name} is a 2-dimensional test function"):
                call(np.zeros(3))
    with pytest.raises(ValueError, match="g must have the shape of x"):
        tf.value_and_grad_into(x, np.zeros(3))
    with pytest.raises(ValueError, match="g must be 1-D"):
        tf.value_and_grad_into(x, np.zeros((2, 1)))
    with pytest.raises(TypeError, match="g must be a NumPy array"):
        tf.value_and_grad_into(x, None)


# ---------------------------------------------------------------------------
# One definition: the four functions agree, run in user code, load from the cache
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,n", CASES, ids=CASE_IDS)
def test_the_value_is_the_same_bits_from_every_function(name, n):
    """Each problem's value is written once, so fun and the value-and-gradient functions agree to
    the bit (before, Beale's fun computed x*y**2 as (x*y)*y and the others as x*(y*y))."""
    tf = get(name, n)
    g = np.empty(tf.n)
    for x in np.vstack([_random_points(tf, 8, seed=21), tf.x0, tf.minimizers]):
        f = tf.fun(x)
        assert np.float64(f).tobytes() == np.float64(tf.value_and_grad(x)[0]).tobytes()
        assert np.float64(f).tobytes() == np.float64(tf.value_and_grad_into(x, g)).tobytes()


def test_the_functions_run_inside_a_users_njit_code():
    import numba
    from adamnb.problems import functions

    @numba.njit
    def user(x):
        g = np.empty_like(x)
        f = functions.rosenbrock_value_and_grad_into(x, g)
        return (f + functions.beale(x) + functions.ackley_value_and_grad(x)[0]
                + functions.rastrigin_grad(x)[0] + g[0])

    x = np.array([0.3, -0.7])
    expected = (rosen(x) + REFERENCE["beale"](x) + REFERENCE["ackley"](x)
                + get("rastrigin").grad(x)[0] + rosen_der(x)[0])
    assert user(x) == pytest.approx(expected, rel=1e-13)


def test_a_second_process_loads_the_functions_from_numbas_cache(tmp_path):
    """cache=True holds for the generated functions: a second process compiles nothing."""
    import os
    import subprocess
    import sys
    code = (
        "import json, numpy as np\n"
        "from adamnb.problems.functions import FUNCTIONS\n"
        "stats = []\n"
        "for name in ('rastrigin', 'rosenbrock', 'beale', 'ackley'):  # each shape of problem\n"
        "    tf = FUNCTIONS[name]\n"
        "    x = tf.x0.copy(); g = np.empty_like(x)\n"
        "    tf.fun(x); tf.grad(x); tf.value_and_grad(x); tf.value_and_grad_into(x, g)\n"
        "    for f in (tf.fun, tf.grad, tf.value_and_grad, tf.value_and_grad_into):\n"
        "        stats.append([sum(f.stats.cache_hits.values()),\n"
        "                      sum(f.stats.cache_misses.values())])\n"
        "print(json.dumps(stats))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True) for _ in range(2)]
    first, second = (np.array(__import__("json").loads(run.stdout)) for run in runs)
    assert (first[:, 1] == 1).all()  # each compiled once, in the first process
    assert (second[:, 0] == 1).all() and (second[:, 1] == 0).all(), second
