"""The compiled update rules against the independent NumPy reference (tests/reference.py).

A table of (method, options) crossed with dtypes, as in optax's tests: each case runs many steps
of the stateful optimizer and of the slow reference on the same gradient stream and compares every
iterate.
"""

import pickle

import numpy as np
import pytest

import adamnb
from adamnb.backends import cpu as kernels
from adamnb.optim import rules, schedules
from tests.reference import DEFAULTS, reference_run

STEPS = 80
N = 37

CASES = [
    ("sgd", {}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.05}),
    ("adagrad", {}),
    ("adagrad", {"lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1,
                 "weight_decay": 0.1}),
    ("rmsprop", {"lr": 1e-3}),
    ("rmsprop", {"lr": 1e-3, "centered": True}),
    ("rmsprop", {"lr": 1e-3, "momentum": 0.9}),
    ("rmsprop", {"lr": 1e-3, "centered": True, "momentum": 0.5, "weight_decay": 0.1,
                 "alpha": 0.9}),
    ("adadelta", {}),
    ("adadelta", {"lr": 0.5, "rho": 0.5, "weight_decay": 0.1, "eps": 1e-4}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1}),
    ("adam", {"lr": 0.01, "amsgrad": True}),
    ("amsgrad", {"lr": 0.01, "weight_decay": 0.05}),
    ("adamw", {}),
    ("adamw", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.3}),
    ("adamax", {}),
    ("adamax", {"lr": 0.01, "weight_decay": 0.1, "beta2": 0.99}),
    ("nadam", {}),
    ("nadam", {"lr": 0.01, "momentum_decay": 0.01, "weight_decay": 0.1}),
    ("radam", {}),
    ("radam", {"lr": 0.01, "beta2": 0.99, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.01, "momentum": 0.9, "maximize": True}),
    ("adam", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}),
    ("nadam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("radam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True}),
    ("rprop", {}),
    ("rprop", {"lr": 0.05, "eta_minus": 0.3, "eta_plus": 1.5, "step_size_min": 1e-3,
               "step_size_max": 0.5}),
    ("asgd", {}),
    ("asgd", {"lr": 0.02, "lambd": 0.01, "alpha": 0.5, "t0": 10.0, "weight_decay": 0.1}),
    ("lion", {}),
    ("lion", {"lr": 3e-3, "beta1": 0.8, "beta2": 0.95, "weight_decay": 0.1}),
    ("yogi", {}),
    ("yogi", {"lr": 0.05, "beta1": 0.8, "beta2": 0.99, "eps": 1e-4,
              "initial_accumulator_value": 0.1}),
    ("adabelief", {}),
    ("adabelief", {"lr": 0.01, "beta1": 0.8, "eps": 1e-8, "eps_root": 0.0, "nesterov": True}),
    ("adan", {}),
    ("adan", {"lr": 0.01, "beta1": 0.9, "beta2": 0.8, "beta3": 0.95, "weight_decay": 0.1}),
    ("adopt", {}),
    ("adopt", {"lr": 0.01, "beta2": 0.99, "nesterov": True}),
    ("adopt", {"lr": 0.01, "use_clipping": False}),
    ("ademamix", {}),
    ("ademamix", {"lr": 0.01, "beta3": 0.999, "alpha": 2.0, "weight_decay": 0.1,
                  "alpha_warmup": 50, "beta3_warmup": 60}),
    ("schedule_free_adamw", {}),
    ("schedule_free_adamw", {"lr": 0.01, "warmup_steps": 10, "beta1": 0.95, "weight_decay": 0.1,
                             "weight_lr_power": 1.0}),
    ("lamb", {"lr": 0.01}),
    ("lamb", {"lr": 0.01, "beta1": 0.8, "eps": 1e-8, "eps_root": 1e-6, "weight_decay": 0.1}),
    ("novograd", {"lr": 0.01}),
    ("novograd", {"lr": 0.01, "beta1": 0.8, "beta2": 0.9, "eps": 1e-8, "eps_root": 1e-6,
                  "weight_decay": 0.1}),
    ("prodigy", {}),
    ("prodigy", {"lr": 0.5, "beta3": 0.9, "weight_decay": 0.1, "estim_lr0": 1e-3,
                 "safeguard_warmup": True}),
    ("adafactor", {}),
    ("adafactor", {"lr": 0.05, "beta2_decay": -0.5, "eps1": 1e-3, "eps2": 1e-2, "d": 2.0,
                   "weight_decay": 0.1, "maximize": True}),
]
CASE_IDS = [f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for m, o in CASES]


def make_gradient(n=N, seed=0):
    """A deterministic gradient stream: an ill-conditioned quadratic plus step-dependent noise."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, n))
    a = q @ q.T / n + np.diag(np.linspace(0.1, 3.0, n))
    noise = rng.normal(scale=0.3, size=(STEPS + 5, n))

    def grad(x, t):
        return (a.astype(x.dtype) @ x + noise[t].astype(x.dtype)).astype(x.dtype)

    return grad


def optimizer_for(method, **options):
    if method == "amsgrad":
        return adamnb.Adam(amsgrad=True, **options)
    return adamnb.optim.optimizers.OPTIMIZERS[method](**options)


def run_optimizer(opt, x0, grad, steps=STEPS):
    x = x0.copy()
    iterates = []
    for t in range(1, steps + 1):
        opt.step(x, grad(x, t))
        iterates.append(x.copy())
    return iterates


@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
def test_float64_matches_documented_formula(method, options):
    x0 = np.random.default_rng(1).normal(size=N)
    grad = make_gradient()
    ours = run_optimizer(optimizer_for(method, **options), x0, grad)
    expected = reference_run(method, x0, grad, steps=STEPS, **options)
    for t, (a, b) in enumerate(zip(ours, expected), start=1):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=f"step {t}")
    assert np.abs(ours[-1] - x0).max() > 1e-3  # the run really moved


@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
def test_float32_matches_reference_and_stays_float32(method, options):
    x0 = np.random.default_rng(2).normal(size=N).astype(np.float32)
    grad = make_gradient()
    opt = optimizer_for(method, **options)
    ours = run_optimizer(opt, x0, grad)
    expected = reference_run(method, x0, grad, steps=STEPS, **options)
    assert ours[-1].dtype == np.float32 and opt.state is None or opt.state.dtype == np.float32
    scale = np.abs(np.array(expected)).max()
    for t, (a, b) in enumerate(zip(ours, expected), start=1):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * scale, err_msg=f"step {t}")


@pytest.mark.parametrize("method", ["adam", "adagrad", "sgd", "nadam", "radam"])
def test_schedule_matches_reference(method):
    schedule = schedules.Warmup(schedules.InverseSqrt(0.05), 10)
    options = {"momentum": 0.9} if method == "sgd" else {}
    x0 = np.random.default_rng(3).normal(size=N)
    grad = make_gradient()
    ours = run_optimizer(optimizer_for(method, lr=schedule, **options), x0, grad)
    expected = reference_run(method, x0, grad, steps=STEPS, lr_schedule=schedule, **options)
    np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-13)


def test_defaults_are_torchs():
    for method, defaults in DEFAULTS.items():
        assert rules.get_rule(method).defaults == defaults, method


@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_serial_and_parallel_kernels_give_identical_bits(method, options, dtype):
    n = 100_003  # odd, so the threads' chunks and the vector remainders fall differently
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=n).astype(dtype)
    serial, parallel = optimizer_for(method, parallel=False, **options), \
        optimizer_for(method, parallel=True, **options)
    xs, xp = x0.copy(), x0.copy()
    for _ in range(5):
        g = (rng.normal(size=n) + 0.5 * xs).astype(dtype)
        serial.step(xs, g)
        parallel.step(xp, g)
    assert xs.tobytes() == xp.tobytes()
    if serial.state is not None:
        assert serial.state.tobytes() == parallel.state.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_recompilation_after_first_step(dtype):
    for method, options in CASES:
        opt = optimizer_for(method, **options)
        x = np.ones(8, dtype)
        opt.step(x, x.copy())
        kernel = kernels.cpu_kernel(opt.rule, False)
        before = len(kernel.signatures)
        for t in range(30):
            opt.step(x, np.full(8, 0.1 * t, dtype))
        assert len(kernel.signatures) == before, (method, options)


def compiled_bodies(ir):
    """The LLVM IR of the compiled functions, without the CPython wrappers that unbox arguments
    (those convert Python floats to float32 through double, which is not kernel work)."""
    functions = ir.split("\ndefine ")
    return "\n".join(f for f in functions[1:]
                     if not f.split("@", 1)[1].startswith(("_ZN7cpython", "cpython.", "cfunc.")))


#: The parallel kernels whose structure differs: one element rule (the prange loop around an
#: element is the same for every rule, whose element code the serial kernels' check covers) and
#: every rule with reductions inside its step (a prange reduction of their own).
PARALLEL_STRUCTURES = ["adam"] + [name for name, rule in rules.VECTOR_RULES.items()
                                  if rule.reductions]


@pytest.mark.parametrize("parallel", [False, True])
def test_float32_kernels_do_no_float64_arithmetic(parallel):
    """Every float32 kernel's LLVM IR is free of double-precision arithmetic and conversions:
    every rule's serial kernel, and each distinct parallel kernel (:data:`PARALLEL_STRUCTURES`)."""
    chosen = [rules.VECTOR_RULES[name] for name in PARALLEL_STRUCTURES] if parallel \
        else rules.VECTOR_RULES.values()
    for rule in {(rule.element, rule.reduce): rule for rule in chosen}.values():
        options = rule.validate({})
        x = np.ones(4, np.float32)
        state = np.zeros((len(rule.slots), 4), np.float32)
        c = rule.stream(options, schedules.as_schedule(1e-3), np.float32).step(1)
        # A fresh, uncached build: numba cannot show the IR of code loaded from its cache.
        kernel = kernels._build_cpu_kernel(rule, parallel, cache=False)
        kernel(x, x.copy(), state, rule.carry_vector(options, np.float32), c)
        signature = [s for s in kernel.signatures if s[0].dtype.name == "float32"][0]
        ir = kernel.inspect_llvm(signature)
        ir = compiled_bodies("\n".join(ir.values()) if isinstance(ir, dict) else ir)
        for instruction in (" fpext ", " fptrunc ", "fadd double", "fmul double", "fdiv double",
                            "@llvm.sqrt.f64"):
            assert instruction not in ir, (rule.name, instruction)
        assert "fmul float" in ir or "fmul <" in ir, rule.name  # the float32 work is really there


@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checkpoint_resume_is_bit_identical(method, options, dtype):
    x0 = np.random.default_rng(5).normal(size=N).astype(dtype)
    grad = make_gradient()
    uninterrupted = run_optimizer(optimizer_for(method, **options), x0, grad, steps=40)[-1]

    opt = optimizer_for(method, **options)
    x = x0.copy()
    for t in range(1, 21):
        opt.step(x, grad(x, t))
    checkpoint = pickle.loads(pickle.dumps(opt.state_dict()))
    saved_x = x.copy()
    del opt

    resumed = optimizer_for(method, **options)
    resumed.load_state_dict(checkpoint)
    x = saved_x
    for t in range(21, 41):
        resumed.step(x, grad(x, t))
    assert x.tobytes() == uninterrupted.tobytes()


def test_state_dict_is_a_copy_and_names_torchs_slots():
    opt = adamnb.Adam(amsgrad=True)
    x = np.ones(3)
    opt.step(x, np.ones(3))
    snapshot = opt.state_dict()
    assert set(snapshot["state"]) == {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert snapshot["step"] == 1
    snapshot["state"]["exp_avg"][:] = 99.0
    assert opt.state[0, 0] != 99.0


def test_load_state_dict_rejects_a_foreign_or_broken_checkpoint():
    adam = adamnb.Adam()
    adam.step(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="method 'adam', not 'sgd'"):
        adamnb.SGD().load_state_dict(adam.state_dict())
    broken = adam.state_dict()
    del broken["state"]["exp_avg_sq"]
    with pytest.raises(ValueError, match="expected"):
        adamnb.Adam().load_state_dict(broken)


def test_state_is_created_on_first_step_typed_like_x():
    opt = adamnb.RMSprop(momentum=0.9, centered=True)
    assert opt.state is None
    x = np.ones(5, np.float32)
    opt.step(x, np.ones(5, np.float32))
    assert opt.state.shape == (3, 5) and opt.state.dtype == np.float32
    plain = adamnb.Adam()
    plain.step(np.ones(5), np.ones(5))
    assert plain.state.shape == (2, 5)  # no max_exp_avg_sq without amsgrad
    sgd = adamnb.SGD(lr=0.1)
    sgd.step(np.ones(5), np.ones(5))
    assert sgd.state.shape == (0, 5)  # plain SGD keeps no state


def test_kernel_runs_inside_a_users_njit_function():
    """The element math is ordinary numba code: a user's own @njit loop can call it."""
    import numba

    element = rules.RULES["adam"].element

    @numba.njit
    def user_loop(x, g, state, c):
        for i in range(x.size):
            x[i] = element(x[i], g[i], state, i, c)

    options = rules.RULES["adam"].validate({"lr": 0.1})
    c = rules.RULES["adam"].stream(options, schedules.as_schedule(0.1), np.float64).step(1)
    x, xk = np.array([1.0, -1.0]), np.array([1.0, -1.0])
    user_loop(x, np.array([0.5, 0.5]), np.zeros((2, 2)), c)
    adamnb.Adam(lr=0.1).step(xk, np.array([0.5, 0.5]))
    assert x.tobytes() == xk.tobytes()


@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
def test_a_block_of_steps_gives_the_bits_of_one_step_at_a_time(method, options):
    """The drivers read the scalars in blocks of steps, the classes one step at a time: the
    same bits, each rounded once to x's dtype, with the host scalars (NAdam's product) carried
    over from block to block."""
    rule = rules.get_rule(method)
    validated = rule.validate(options)
    schedule = schedules.as_schedule(validated["lr"])
    for dtype in (np.float64, np.float32):
        blocks = rule.stream(validated, schedule, dtype, step=2)
        columns = np.concatenate([blocks.columns(t, 500) for t in (3, 503, 1003)], axis=1)
        assert columns.dtype == dtype and columns.shape == (rule.n_coefficients, 1500)
        single = rule.stream(validated, schedule, dtype, step=2)
        steps = np.array([single.step(t) for t in range(3, 1503)], dtype=dtype).T
        assert columns.tobytes() == steps.tobytes()
        assert blocks.scalars == single.scalars


def test_the_scalars_are_read_by_name_and_their_layout_is_checked():
    """A rule declares its per-step scalars by name; an element that unpacks them in another order
    (or a coefficients function that names them otherwise) is refused when the rule is built,
    never silently run with two numbers swapped."""
    import dataclasses

    adam = rules.RULES["adam"]
    swapped = list(adam.scalars)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ValueError, match="must begin by unpacking"):
        dataclasses.replace(adam, scalars=tuple(swapped))

    def misnamed(o, t, lr):
        values = adam.coefficients(o, t, lr)
        values["stepsize"] = values.pop("step_size")
        return values

    broken = dataclasses.replace(adam, coefficients=misnamed)
    with pytest.raises(ValueError, match="coefficients gave"):
        broken.stream(adam.validate({}), schedules.as_schedule(1e-3), np.float64).step(1)


def test_the_scalars_come_from_the_element_and_the_standard_ones_are_the_formulas():
    """A rule's scalars are the names its element unpacks, in that order; a scalar the rule's
    coefficients do not give is computed from the standard vocabulary, each against its formula
    written here (Kingma & Ba's bias correction 1 - beta^t, 1 - beta, the option, the rate)."""
    import dataclasses

    from adamnb.optim._rule import _unpacked_names

    for rule in rules.VECTOR_RULES.values():
        declared = _unpacked_names(rule.reduce or rule.element)
        if rule.reduce is None:
            declared = declared[:len(declared) - len(rule.finished)]
        assert rule.scalars == declared, rule.name

    yogi = rules.RULES["yogi"]
    options = yogi.validate({"beta1": 0.8, "beta2": 0.99, "eps": 1e-3})
    t = np.arange(1, 8)
    lr = np.linspace(0.1, 0.2, t.size)
    columns, _ = yogi.coefficient_columns(options, t, lr, {})
    row = dict(zip(yogi.scalars, columns))
    np.testing.assert_array_equal(row["bias_correction1"], 1.0 - 0.8 ** t)
    np.testing.assert_array_equal(row["bias_correction2"], 1.0 - 0.99 ** t)
    np.testing.assert_array_equal(row["one_minus_beta1"], np.full(t.size, 1.0 - 0.8))
    np.testing.assert_array_equal(row["beta1"], np.full(t.size, 0.8))
    np.testing.assert_array_equal(row["lr"], lr)
    np.testing.assert_array_equal(row["eps"], np.full(t.size, 1e-3))

    # A scalar neither standard nor given is named in the error, at the first step.
    adagrad = rules.RULES["adagrad"]
    silent = dataclasses.replace(adagrad, coefficients=None)
    with pytest.raises(ValueError, match="'clr', which is not a standard one"):
        silent.stream(adagrad.validate({}), schedules.as_schedule(1e-2), np.float64).step(1)
    # A given scalar the element does not read is refused too (a typo never goes unseen).
    extra = dataclasses.replace(
        adagrad, coefficients=lambda o, t, lr: {**adagrad.coefficients(o, t, lr), "clrr": lr})
    with pytest.raises(ValueError, match="does not read"):
        extra.stream(adagrad.validate({}), schedules.as_schedule(1e-2), np.float64).step(1)


def test_a_rule_without_rows_uses_every_slot_also_when_copied_with_other_slots():
    import dataclasses
    yogi = rules.RULES["yogi"]
    assert yogi.rows({}) == len(yogi.slots) == 2
    assert dataclasses.replace(yogi, slots=("mu",)).rows({}) == 1
    assert pickle.loads(pickle.dumps(yogi.rows))({}) == 2
    sgd = rules.RULES["sgd"]  # declares its own: the buffer only with momentum
    assert sgd.rows({"momentum": 0.0}) == 0 and sgd.rows({"momentum": 0.9}) == 1
