"""minimize_batch's vectorised tiles give every start the bits of its own single-start run.

The reference of each start is ``adamnb.minimize`` on the host loop (``compiled=False``), which
does one start's iteration in Python around the rule's kernel: an independent path through the
code. Every field a start's result has is compared: x, jac, fun, nit, nfev, njev, status.
"""

import platform
import re

import numba
import numpy as np
import pytest

import adamnb
from adamnb.optim import rules
from adamnb.optimize import _batch
from adamnb.problems.functions import get, rosenbrock_value_and_grad
from tests.objectives import into_allocation_free, into_calling_an_allocating_helper, with_into

ROSENBROCK = get("rosenbrock")
BOUNDS = [(-1.1, 2.0), (None, 1.05)]


def assert_each_start_is_its_own_run(batch, fun, starts, method, jac=True, bounds=None,
                                     args=(), options=None):
    for j, start in enumerate(starts):
        single = adamnb.minimize(fun, start, args=args, method=method, jac=jac, bounds=bounds,
                                 options={**options, "compiled": False})
        assert batch.x[j].tobytes() == single.x.tobytes(), j
        assert batch.jac[j].tobytes() == single.jac.tobytes(), j
        assert batch.fun[j] == single.fun, j
        assert (batch.nit[j], batch.nfev[j], batch.njev[j], batch.status[j]) == \
            (single.nit, single.nfev, single.njev, single.status), j


# Options chosen so that among 40 starts some converge (status 0), some run out of steps
# (status 1) and, for some, a step overflows (status 3); and so that each branch of each element
# is taken: AMSGrad's maximum, Nesterov momentum, centred RMSprop with momentum, RAdam before and
# after its rectification starts.
CASES = [
    ("amsgrad", np.float64, BOUNDS, {"lr": 0.02, "beta2": 0.5}),
    ("adam", np.float32, None, {"lr": 0.02, "weight_decay": 0.1}),
    ("sgd", np.float32, None, {"lr": 1e-3, "momentum": 0.9, "nesterov": True, "gtol": 1e-2}),
    ("rmsprop", np.float64, BOUNDS, {"lr": 2e-3, "centered": True, "momentum": 0.5}),
    ("radam", np.float64, None, {"lr": 0.02}),
    ("adamax", np.float32, BOUNDS, {"lr": 0.02}),
]


@pytest.mark.parametrize("method, dtype, bounds, hyperparameters", CASES,
                         ids=[case[0] for case in CASES])
def test_every_start_equals_its_single_run(method, dtype, bounds, hyperparameters):
    starts = np.random.default_rng(3).uniform(-3, 3, size=(40, 2)).astype(dtype)
    options = {"maxiter": 800, "gtol": 1e-3, **hyperparameters}
    batch = adamnb.minimize_batch(ROSENBROCK.value_and_grad, starts, method=method, jac=True,
                                  bounds=bounds, options=options)
    assert batch.x.dtype == dtype
    assert_each_start_is_its_own_run(batch, ROSENBROCK.value_and_grad, starts, method,
                                     bounds=bounds, options=options)
    if method == "sgd":  # the case meant to cover all three outcomes
        assert set(batch.status) == {0, 1, 3}


@numba.njit
def _user_into(x, g, shift):
    a = x[1] - x[0] * x[0]
    b = shift - x[0]
    g[0] = -400.0 * x[0] * a - 2.0 * b
    g[1] = 200.0 * a
    return 100.0 * a * a + b * b


@numba.njit
def _user_value_and_grad(x, shift):
    g = np.empty_like(x)
    return _user_into(x, g, shift), g


_user_value_and_grad.into = _user_into


@numba.njit
def _user_allocating(x, shift):
    """As users write it: a new gradient array per call, no ``into``."""
    a = x[1] - x[0] * x[0]
    b = shift - x[0]
    return 100.0 * a * a + b * b, np.array([-400.0 * x[0] * a - 2.0 * b, 200.0 * a])


@numba.njit
def _user_dividing(x, shift):
    """Divides in its own code: called from the loop, never compiled into it."""
    return float(np.sum((x - shift) ** 2)) / 2.0, (x - shift) / 1.0


@numba.njit
def _user_fun(x, shift):
    return _user_allocating(x, shift)[0]


@numba.njit
def _user_grad(x, shift):
    return _user_allocating(x, shift)[1]


@pytest.mark.parametrize("fun, jac", [(_user_value_and_grad, True), (_user_allocating, True),
                                      (_user_dividing, True), (_user_fun, _user_grad)],
                         ids=["into", "allocating", "dividing", "fun-and-jac"])
def test_a_users_objective_with_extra_arguments(fun, jac):
    starts = np.random.default_rng(4).uniform(-2, 2, size=(37, 2))  # not a multiple of a tile
    options = {"lr": 0.01, "maxiter": 300, "gtol": 1e-4}
    batch = adamnb.minimize_batch(fun, starts, args=(1.5,), jac=jac, options=options)
    assert_each_start_is_its_own_run(batch, fun, starts, "adam", jac=jac, args=(1.5,),
                                     options=options)


def test_threads_do_not_change_a_bit():
    starts = np.random.default_rng(5).uniform(-2, 2, size=(300, 2))
    options = {"lr": 0.01, "maxiter": 200, "gtol": 0}
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = adamnb.minimize_batch(ROSENBROCK.value_and_grad, starts, jac=True, options=options)
    finally:
        numba.set_num_threads(threads)
    many = adamnb.minimize_batch(ROSENBROCK.value_and_grad, starts, jac=True, options=options)
    assert one.x.tobytes() == many.x.tobytes() and np.array_equal(one.nit, many.nit)


def test_one_start_and_a_non_finite_first_evaluation():
    @numba.njit
    def infinite_left(x):
        f = x[0] * x[0]
        if x[0] < -1.0:
            f = np.inf
        return f, 2.0 * x

    starts = np.array([[-2.0], [0.5]])
    res = adamnb.minimize_batch(infinite_left, starts, method="sgd", jac=True,
                                options={"lr": 0.1, "maxiter": 100})
    assert list(res.status) == [3, 0] and res.nit[0] == 0 and res.best == 1
    single = adamnb.minimize_batch(infinite_left, starts[1:], method="sgd", jac=True,
                                   options={"lr": 0.1, "maxiter": 100})
    assert single.x.tobytes() == res.x[1:].tobytes()


def test_flags_are_compiled_in_only_where_the_element_branches():
    assert {rules.RULES["adam"].scalars[r] for r in _batch._branch_rows(rules.RULES["adam"])} \
        == {"maximize", "amsgrad"}
    sgd = rules.RULES["sgd"]
    assert {sgd.scalars[r] for r in _batch._branch_rows(sgd)} == {"maximize", "use_momentum", "nesterov"}
    table = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    assert _batch._pattern(table, (0, 1, 2)) == (0.0, None, None)  # 0.5 is no flag
    assert _batch._merge((0.0, 1.0, None), (0.0, 0.0, None)) == (0.0, None, None)


def test_a_flag_that_changes_between_blocks_gives_the_same_bits(monkeypatch):
    """RAdam's rectification flag is 0 for steps 1 to 5, then 1. With blocks of 4 steps the
    first block holds it at 0 and compiles it in; the second must not."""
    monkeypatch.setattr(_batch, "block_length", lambda t, record: 4)
    seen = []
    original = _batch._compiled_batched_loop
    monkeypatch.setattr(_batch, "_compiled_batched_loop",
                        lambda *args: seen.append(args[8]) or original(*args))
    starts = np.array([[-1.2, 1.0], [0.5, 0.5]])
    options = {"lr": 0.01, "maxiter": 30, "gtol": 1e-300}
    batch = adamnb.minimize_batch(ROSENBROCK.value_and_grad, starts, method="radam", jac=True,
                                  options=options)
    rectified = rules.RULES["radam"].scalars.index("rectified")
    assert [pattern[rectified] for pattern in seen] == [0.0, None]
    assert_each_start_is_its_own_run(batch, ROSENBROCK.value_and_grad, starts, "radam",
                                     options=options)


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="return_all"):
        adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.zeros((2, 2)),
                              options={"return_all": True})
    with pytest.raises(ValueError, match="Invalid fast"):
        adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.zeros((2, 2)),
                              options={"fast": "yes"})

    @numba.njit
    def wrong_shape(x):
        return 0.0, np.zeros(3)

    with pytest.raises(ValueError, match="shape"):
        adamnb.minimize_batch(wrong_shape, np.zeros((2, 2)))


def test_an_allocating_gradient_of_the_built_in_problem():
    @numba.njit
    def allocating(x):
        return rosenbrock_value_and_grad(x)

    starts = np.random.default_rng(6).uniform(-2, 2, size=(9, 2))
    options = {"lr": 0.01, "maxiter": 150, "gtol": 0}
    fast = adamnb.minimize_batch(ROSENBROCK.value_and_grad, starts, jac=True, options=options)
    slow = adamnb.minimize_batch(allocating, starts, jac=True, options=options)
    assert fast.x.tobytes() == slow.x.tobytes() and fast.jac.tobytes() == slow.jac.tobytes()


@pytest.mark.parametrize("method, hyperparameters", [
    ("schedule_free_adamw", {"lr": 0.01}),
    ("asgd", {"lr": 1e-3, "t0": 5.0}),
])
def test_a_stopped_start_keeps_its_state_and_outputs(method, hyperparameters):
    """A start that stops early (converged at once, or after a few steps) while others run on
    keeps the optimizer state it stopped with: its outputs (schedule-free's z and x, ASGD's ax)
    are those of its own run through minimize."""
    quadratic = get("quadratic", n=2)
    starts = np.array([[1e-4, -1e-5], [2e-2, 1e-3], [3.0, -2.0], [-1.0, 2.5]])
    options = {"maxiter": 300, "gtol": 1e-2, **hyperparameters}
    batch = adamnb.minimize_batch(quadratic.value_and_grad, starts, method=method,
                                  options=options)
    assert batch.status[0] == 0 and batch.nit[0] < batch.nit[2] == 300  # stopped early
    assert_each_start_is_its_own_run(batch, quadratic.value_and_grad, starts, method,
                                     options=options)
    for j, start in enumerate(starts):
        single = adamnb.minimize(quadratic.value_and_grad, start, method=method, jac=True,
                                 options={**options, "compiled": False})
        for name in set(single) - {"x", "fun", "jac", "nit", "nfev", "njev", "status",
                                   "success", "message"}:
            assert batch[name][j].tobytes() == single[name].tobytes(), (j, name)


# --- bad input refused in Python, before any compilation (review items U2, U3, U8) -------------

@numba.njit
def _value_only(x):
    return float(x @ x)


@pytest.mark.parametrize("call, error, message", [
    (lambda: adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.ones((3, 2)), args=(1.5,)),
     ValueError, r"cannot call fun\(x, \*args\).*args=\(1.5,\)"),
    (lambda: adamnb.minimize_batch(_value_only, np.ones((3, 2)), jac=True),
     ValueError, r"with jac=True, fun must return a tuple \(f, g\)"),
    (lambda: adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.ones((3, 2)),
                                   jac=ROSENBROCK.grad),
     ValueError, "pass jac=True"),
    (lambda: adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.ones((3, 2)),
                                   method=adamnb.adam),
     TypeError, "takes a method name"),
    (lambda: adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.ones((3, 2)),
                                   options={"compiled": True}),
     ValueError, "Unknown option for minimize_batch: 'compiled'"),
    (lambda: adamnb.minimize_batch(ROSENBROCK.value_and_grad, np.ones((3, 2)),
                                   options={"maxiter": 1, "bogus": 1}),
     ValueError, "Unknown option for minimize_batch: 'bogus'"),
])
def test_bad_input_is_named_before_compiling(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_best_when_every_start_meets_nan():
    """best is never -1 (which would index the last start): when every start meets NaN or inf,
    it is the start with the lowest last finite value."""

    @numba.njit
    def blows_up(x):
        return (float(x @ x) if abs(x[0]) <= 2.0 else np.inf), 2.0 * x

    starts = np.array([[1.9, 0.0], [1.5, 0.0], [1.0, 3.0]])
    options = {"lr": 0.1, "maximize": True, "maxiter": 50}
    res = adamnb.minimize_batch(blows_up, starts, method="sgd", options=options)
    assert res.status.tolist() == [3, 3, 3]
    assert np.isfinite(res.fun).all()
    assert res.best == int(np.argmin([x @ x for x in res.x])) == 1  # x = (1.8, 0) there
    res = adamnb.minimize_batch(blows_up, np.array([[2.5, 0.0], [3.0, 0.0]]), method="sgd",
                                options=options)
    assert res.best is None  # no start has a finite value at all


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="reads x86-64 assembly")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_tile_loop_is_vectorised(dtype):
    """The batch's promise, one step of several starts per instruction: Adam's square root and
    division in the tile loop of an inlinable objective are packed (``vsqrtpd``/``vdivps`` ...),
    not one start at a time. A view whose pointer LLVM cannot relate to the tile's buffer (the
    state rows made by ``reshape``) left the loop scalar, three times slower, with the same
    results, so no other test saw it."""
    starts = np.random.default_rng(7).uniform(-2, 2, size=(16, 2)).astype(dtype)
    # A user's function (compiled in this process: its loop's assembly can be read)
    adamnb.minimize_batch(with_into(into_allocation_free), starts, jac=True,
                          options={"maxiter": 5})
    (loop,) = [loop for key, loop in _batch._loops.items()
               if key[3] is into_allocation_free and key[9] == np.dtype(dtype)]
    assembly = "\n".join(loop.inspect_asm().values())
    kind = "d" if dtype == np.float64 else "s"
    packed = re.findall(rf"\b(?:v)?(?:sqrt|div)p{kind}\b", assembly)
    assert packed, "no packed square root or division in the tile loop"


def test_an_into_that_calls_an_allocating_helper():
    """Such an objective needs numba's runtime in the tile loop (its helper's arrays must be
    freed). The batch first tried a loop without the runtime, numba kept the helper's failure
    there for the retry, and the batch refused the objective with a TypingError."""
    starts = np.random.default_rng(8).uniform(-1, 1, size=(5, 2))
    options = {"lr": 0.01, "maxiter": 50, "gtol": 0}
    batch = adamnb.minimize_batch(with_into(into_calling_an_allocating_helper), starts,
                                  jac=True, options=options)
    reference = adamnb.minimize_batch(with_into(into_allocation_free), starts, jac=True,
                                      options=options)
    assert batch.x.tobytes() == reference.x.tobytes()
