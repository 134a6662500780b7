"""Parameter groups over the flat vector (adamnb.optim.groups), and the rules that act on a group's
views as wholes: Muon, Adafactor's factored second moments, LAMB's per-layer trust ratio,
NovoGrad's per-layer gradient norm.

The groups are torch's param groups: each view of the vector is one of torch's tensors, with its
own state and its group's options. The checks, on an MLP's flat vector split as a torch user
splits a model (``MLP.param_groups()``: the kernels, and the biases without weight decay):

* grouped runs equal, bit for bit, the same rule run ungrouped on each view with its group's
  options (what "param groups" means for an element-wise rule);
* they match torch with the same two param groups (torch.optim.AdamW, Rprop, Adafactor,
  Muon + AdamW as torch recommends) and optax (LAMB with a weight-decay mask, per-leaf trust
  ratio), 60 steps in float64 to 1e-10, and bit for bit where the ungrouped rule does (Rprop in
  float32: torch's other kernels fuse multiply-adds that adamnb rounds twice, see the notes of
  test_the_groups_give_torchs_bits_where_the_rule_does);
* the matrix rules match the independent references of tests/reference.py (always run);
* minimize with groups, checkpoints with groups, the threaded sums and the errors.
"""

import dataclasses
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import adamnb
from adamnb.backends import cpu
from adamnb.backends.jit import elementwise
from adamnb.optim import RULES
from adamnb.nn import MLP
from tests.reference import DEFAULTS, reference_run

STEPS, RTOL, ATOL = 60, 1e-10, 1e-13
#: One tall and one wide weight matrix: torch's (units, fan_in) are (7, 4) and (3, 7).
SIZES = (4, 7, 3)


def mlp_problem(dtype=np.float64, sizes=SIZES, seed=0):
    """An MLP, its initial flat vector and ``grad(x, t)``: the gradient of the t-th minibatch."""
    model = MLP(sizes, dtype=dtype)
    x0 = model.init(seed=seed + 1)
    rng = np.random.default_rng(seed)
    batches = [(rng.normal(size=(8, sizes[0])).astype(dtype),
                rng.integers(0, sizes[-1], size=8)) for _ in range(STEPS + 1)]

    def grad(x, t):
        X, y = batches[t - 1]
        return model.loss_and_grad(x, X, y)[1].copy()

    return model, x0, grad


def run_class(optimizer, x0, grad, steps=STEPS):
    x, out = x0.copy(), []
    for t in range(1, steps + 1):
        optimizer.step(x, grad(x, t))
        out.append(x.copy())
    return out


def assert_runs_close(got, want, rtol=RTOL, atol=ATOL):
    for t, (a, b) in enumerate(zip(got, want), start=1):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"step {t}")


# --- torch: the model's parameters as torch tensors, and torch's optimizers on them --------------

def torch_parameters(model, x, torch):
    """(weights, biases): torch nn.Linear-shaped leaf tensors holding the flat vector ``x``."""
    weights, biases = [], []
    for kernel, _, bias in model.layout:
        n_in, n_out = model.layers(x)[len(weights)][0].shape
        W = x[kernel].reshape(n_in, n_out).T.copy()
        weights.append(torch.nn.Parameter(torch.from_numpy(W)))
        biases.append(torch.nn.Parameter(torch.from_numpy(x[bias].copy())))
    return weights, biases


def torch_flat(model, weights, biases):
    """The flat vector of torch's tensors, in the model's layout."""
    parts = []
    for W, b in zip(weights, biases):
        parts += [W.detach().numpy().T.ravel(), b.detach().numpy()]
    return np.concatenate(parts)


def torch_run(model, x0, grad, make_optimizers, torch, steps=STEPS):
    """The flat iterates of torch's optimizers (``make_optimizers(weights, biases)``, a list),
    each step fed the model's gradient at torch's own iterate."""
    weights, biases = torch_parameters(model, x0, torch)
    optimizers = make_optimizers(weights, biases)
    out = []
    for t in range(1, steps + 1):
        g = grad(torch_flat(model, weights, biases), t)
        gw, gb = torch_parameters(model, g, torch)
        for p, q in zip(weights + biases, gw + gb):
            p.grad = q.detach().clone()
        for optimizer in optimizers:
            optimizer.step()
        out.append(torch_flat(model, weights, biases))
    return out


@pytest.fixture
def torch_without_bfloat16(monkeypatch):
    """torch, with ``Tensor.bfloat16`` the identity: torch.optim.Muon orthogonalises in bfloat16
    (its speed trick); without it, torch's Muon is its formulas in the parameters' dtype, which
    is what adamnb computes."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())
    return torch


# --- the split of the MLP ------------------------------------------------------------------------

def test_mlp_param_groups_cover_the_vector_with_torchs_weight_shapes():
    model = MLP((4, 7, 3))
    groups = model.param_groups()
    assert groups == [{"params": [(0, 28, (7, 4), "F"), (35, 56, (3, 7), "F")]},
                      {"params": [(28, 35), (56, 59)], "weight_decay": 0.0}]
    x = model.init(seed=0)
    layout = adamnb.optim.groups.Layout(adamnb.optim.RULES["adamw"], {}, adamnb.optim.groups
                                        .parse_groups(groups), x.size, None)
    for index, (W, _) in zip((0, 1), model.layers(x)):
        assert np.shares_memory(layout.matrix(x, index), x)
        np.testing.assert_array_equal(layout.matrix(x, index), W.T)  # torch's Linear weight
    assert model.param_groups(method="adamw", lr=0.1)[-1] == {
        "params": [(28, 35), (56, 59)], "weight_decay": 0.0, "method": "adamw", "lr": 0.1}


# --- groups are torch's param groups --------------------------------------------------------------

@pytest.mark.parametrize("method, options", [
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    ("adam", {"lr": lambda t: 0.01 / t, "weight_decay": 0.1}),
])
def test_a_group_is_its_rule_run_on_each_view_with_the_groups_options(method, options):
    model, x0, grad = mlp_problem()
    cls = adamnb.optim.OPTIMIZERS[method]
    grouped = run_class(cls(model.param_groups(lr=0.02), **options), x0, grad)[-1]
    x = x0.copy()
    views = [(view, {**options}) for view in model.param_groups()[0]["params"]] + \
            [(view, {**options, "weight_decay": 0.0, "lr": 0.02})
             for view in model.param_groups()[1]["params"]]
    singles = [(view[0], view[1], cls(**view_options)) for view, view_options in views]
    for t in range(1, STEPS + 1):
        g = grad(x, t)
        for start, stop, optimizer in singles:
            optimizer.step(x[start:stop], g[start:stop].copy())
    assert grouped.tobytes() == x.tobytes()


def test_no_decay_bias_group_matches_torch_adamw_with_the_same_two_param_groups():
    torch = pytest.importorskip("torch")
    model, x0, grad = mlp_problem()
    ours = run_class(adamnb.AdamW(model.param_groups(), lr=0.01, weight_decay=0.1), x0, grad)
    want = torch_run(model, x0, grad, lambda weights, biases: [torch.optim.AdamW(
        [{"params": weights}, {"params": biases, "weight_decay": 0.0}], lr=0.01,
        weight_decay=0.1, foreach=False)], torch)
    assert_runs_close(ours, want)
    # the bias group kept its decay off: without the groups the run differs
    ungrouped = run_class(adamnb.AdamW(lr=0.01, weight_decay=0.1), x0, grad)
    assert np.abs(ungrouped[-1] - ours[-1]).max() > 1e-6


def test_the_groups_give_torchs_bits_where_the_rule_does():
    """torch's CPU kernels fuse multiply-adds (``add_(..., alpha=)`` is an FMA in its vectorised
    path) and divide ``(value * a) / b`` in ``addcdiv_``; adamnb's elements round each product, so
    most rules agree with torch to rounding only, grouped or not. Rprop's steps are products and
    comparisons torch and adamnb round alike: its two param groups give torch's bits."""
    torch = pytest.importorskip("torch")
    model, x0, grad = mlp_problem(dtype=np.float32)
    groups = model.param_groups(lr=0.003, eta_minus=0.3)
    del groups[-1]["weight_decay"]  # Rprop has none
    ours = run_class(adamnb.Rprop(groups, lr=0.01), x0, grad)
    want = torch_run(model, x0, grad, lambda weights, biases: [torch.optim.Rprop(
        [{"params": weights}, {"params": biases, "lr": 0.003, "etas": (0.3, 1.2)}], lr=0.01,
        foreach=False)], torch)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(ours, want))
    assert ours[-1].dtype == np.float32


# --- the matrix rules ---------------------------------------------------------------------------

MUON_CASES = [{"lr": 0.02}, {"lr": 0.02, "nesterov": False, "momentum": 0.8, "weight_decay": 0.0,
                             "adjust_lr_fn": "match_rms_adamw", "ns_steps": 3}]


@pytest.mark.parametrize("options", MUON_CASES)
def test_muon_with_adamw_for_the_biases_matches_torch(options, torch_without_bfloat16):
    torch = torch_without_bfloat16
    model, x0, grad = mlp_problem()
    ours = run_class(adamnb.Muon(model.param_groups(lr=0.01), **options), x0, grad)
    def optimizers(weights, biases):
        return [torch.optim.Muon(weights, **options),
                # the biases' group: AdamW's defaults and the group's own options
                torch.optim.AdamW(biases, lr=0.01, weight_decay=0.0, foreach=False)]

    want = torch_run(model, x0, grad, optimizers, torch)
    assert_runs_close(ours, want)
    assert np.abs(ours[-1] - x0).max() > 1e-2


@pytest.mark.parametrize("shape, order", [((7, 4), "C"), ((3, 8), "F")])
@pytest.mark.parametrize("options", MUON_CASES)
def test_muon_on_one_matrix_matches_the_reference(shape, order, options):
    rng = np.random.default_rng(5)
    n = shape[0] * shape[1]
    A = rng.normal(size=(n, n)) / n
    x0 = rng.normal(size=n)

    def grad(x, t):
        return A @ x + np.sin(t + np.arange(n))

    ours = run_class(adamnb.Muon([{"params": (0, n, shape, order)}], **options), x0, grad)
    want = reference_run("muon", x0, grad, steps=STEPS, shape=shape, order=order, **options)
    assert_runs_close(ours, want)


def test_muon_defaults_are_torchs():
    torch = pytest.importorskip("torch")
    import inspect
    signature = inspect.signature(torch.optim.Muon.__init__).parameters
    ours = {hp.name: hp.default for hp in adamnb.optim.RULES["muon"].hyperparameters}
    assert (ours["ns_a"], ours["ns_b"], ours["ns_c"]) == signature["ns_coefficients"].default
    for name in ("lr", "weight_decay", "momentum", "nesterov", "eps", "ns_steps", "adjust_lr_fn"):
        assert ours[name] == signature[name].default, name
    assert DEFAULTS["muon"] == ours  # the reference's defaults too


ADAFACTOR_CASES = [{}, {"lr": 0.05, "beta2_decay": -0.5, "eps1": 1e-3, "d": 1.5,
                        "weight_decay": 0.1, "maximize": True}]


@pytest.mark.parametrize("options", ADAFACTOR_CASES)
def test_adafactor_factors_the_matrices_as_torch_does(options):
    torch = pytest.importorskip("torch")
    model, x0, grad = mlp_problem()
    ours = run_class(adamnb.Adafactor(model.param_groups(), **options), x0, grad)
    kwargs = dict(options)
    eps = (kwargs.pop("eps1", None), kwargs.pop("eps2", 1e-3))
    maximize = kwargs.pop("maximize", False)
    want = torch_run(model, x0, grad, lambda weights, biases: [torch.optim.Adafactor(
        [{"params": weights}, {"params": biases, "weight_decay": 0.0}], eps=eps,
        maximize=maximize, foreach=False, **kwargs)], torch)
    assert_runs_close(ours, want)
    # the kernels' state is factored: a row and a column vector per matrix
    optimizer = adamnb.Adafactor(model.param_groups(), **options)
    optimizer.step(x0.copy(), grad(x0, 1))
    assert [tuple(a.shape for a in s) if isinstance(s, tuple) else s.shape
            for s in optimizer.state] == [((7,), (4,)), ((3,), (7,)), (1, 7), (1, 3)]


@pytest.mark.parametrize("shape, order", [((7, 4), "C"), ((3, 8), "F")])
def test_adafactor_on_one_matrix_matches_the_reference(shape, order):
    rng = np.random.default_rng(6)
    n = shape[0] * shape[1]
    x0 = rng.normal(size=n)

    def grad(x, t):
        return 0.5 * x + np.cos(t * np.arange(1, n + 1))

    options = {"lr": 0.05, "weight_decay": 0.1}
    ours = run_class(adamnb.Adafactor([{"params": (0, n, shape, order)}], **options), x0, grad)
    want = reference_run("adafactor", x0, grad, steps=STEPS, shape=shape, order=order,
                         **options)
    assert_runs_close(ours, want)


def optax_per_leaf_run(transformation, views, x0, grad):
    """The iterates of an optax ``transformation`` over the parameters as one leaf per view
    ``(start, stop)`` of the flat vector (the gradient taken of the whole vector)."""
    import jax
    import optax
    params = [jax.numpy.asarray(x0[a:b]) for a, b in views]
    state = transformation.init(params)
    iterates = []
    for t in range(1, STEPS + 1):
        x = np.empty_like(x0)
        for (a, b), leaf in zip(views, params):
            x[a:b] = leaf
        g = grad(x, t)
        updates, state = transformation.update([jax.numpy.asarray(g[a:b]) for a, b in views],
                                               state, params)
        params = optax.apply_updates(params, updates)
        for (a, b), leaf in zip(views, params):
            x[a:b] = leaf
        iterates.append(x)
    return iterates


def test_lamb_takes_its_trust_ratio_per_view_as_optax_per_leaf():
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    model, x0, grad = mlp_problem()
    options = {"lr": 0.01, "weight_decay": 0.1}
    ours = run_class(adamnb.LAMB(model.param_groups(), **options), x0, grad)
    views = [v[:2] for group in model.param_groups() for v in group["params"]]
    decayed = [True] * len(model.param_groups()[0]["params"]) + \
        [False] * len(model.param_groups()[1]["params"])
    transformation = optax.lamb(0.01, weight_decay=0.1, mask=decayed)
    want = optax_per_leaf_run(transformation, views, x0, grad)
    assert_runs_close(ours, want)


def test_novograd_takes_its_gradient_norm_per_view_as_optax_per_leaf():
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    model, x0, grad = mlp_problem()
    views = [v[:2] for group in model.param_groups() for v in group["params"]]
    ours = run_class(adamnb.NovoGrad([{"params": [slice(a, b) for a, b in views]}], lr=0.01,
                                     beta2=0.5, weight_decay=0.1), x0, grad)
    transformation = optax.novograd(0.01, b2=0.5, weight_decay=0.1)
    want = optax_per_leaf_run(transformation, views, x0, grad)
    assert_runs_close(ours, want)
    # one norm over the whole vector is another run: the per-view norms are what is compared
    whole = run_class(adamnb.NovoGrad(lr=0.01, beta2=0.5, weight_decay=0.1), x0, grad)
    assert np.abs(whole[-1] - want[-1]).max() > 1e-6


# --- drivers, checkpoints, threads ----------------------------------------------------------------

@pytest.mark.parametrize("method, options", [
    ("adamw", {"lr": 0.01}), ("muon", {"lr": 0.02}), ("adafactor", {}), ("lamb", {"lr": 0.01})])
def test_minimize_with_groups_takes_the_classes_steps(method, options):
    model, x0, grad = mlp_problem()
    X, y = np.random.default_rng(9).normal(size=(16, SIZES[0])), np.arange(16) % SIZES[-1]
    groups = model.param_groups()
    res = adamnb.minimize(model.loss_and_grad, x0, args=(X, y), method=method, jac=True,
                          options={**options, "groups": groups, "maxiter": 30, "gtol": 0})
    x = x0.copy()
    optimizer = adamnb.optim.OPTIMIZERS[method](groups, **options)
    for _ in range(30):
        optimizer.step(x, model.loss_and_grad(x, X, y)[1].copy())
    assert res.status == 1 and res.x.tobytes() == x.tobytes()


@pytest.mark.parametrize("method, options, grouped", [
    ("muon", {"lr": 0.02}, True), ("adafactor", {}, True), ("adamw", {}, True),
    ("prodigy", {"lr": 0.5}, False), ("lamb", {}, False)])
def test_a_checkpoint_resumes_with_the_same_bits(method, options, grouped, tmp_path):
    model, x0, grad = mlp_problem()
    cls = adamnb.optim.OPTIMIZERS[method]
    groups = model.param_groups() if grouped else None
    whole = run_class(cls(**options, groups=groups), x0, grad)[-1]
    first = cls(**options, groups=groups)
    x = run_class(first, x0, grad, steps=20)[-1]
    adamnb.optim.save_state_dict(first.state_dict(), tmp_path / "state.npz")
    resumed = cls(groups=groups)
    resumed.load_state_dict(adamnb.optim.load_state_dict(tmp_path / "state.npz"))
    # saved again before any step: the same snapshot (state, scalars, groups)
    again, saved = resumed.state_dict(), first.state_dict()
    assert again.keys() == saved.keys() and again.get("groups") == saved.get("groups") \
        and again["step"] == saved["step"] and again["scalars"] == saved["scalars"]
    pieces = (again["state"], saved["state"]) if grouped else ([again["state"]], [saved["state"]])
    for mine, theirs in zip(*pieces):
        assert mine.keys() == theirs.keys()
        assert all(mine[k].tobytes() == theirs[k].tobytes() for k in mine)
    for t in range(21, STEPS + 1):
        resumed.step(x, grad(x, t))
    assert x.tobytes() == whole.tobytes()


@pytest.mark.parametrize("method", ["lamb", "prodigy", "adafactor"])
def test_threaded_sums_give_the_serial_bits(method):
    n = 5 * cpu.SUM_CHUNK + 123  # several chunks, the last one short
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=n).astype(np.float32)
    grads = [rng.normal(size=n).astype(np.float32) for _ in range(5)]
    runs = []
    for parallel in (False, True):
        x, optimizer = x0.copy(), adamnb.optim.OPTIMIZERS[method](parallel=parallel)
        for g in grads:
            optimizer.step(x, g)
        runs.append(x)
    assert runs[0].tobytes() == runs[1].tobytes()


@elementwise
def _signed_terms(x, g, state, i, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    return (x, x * g)  # signed terms, -0.0 among them: no sum of squares hides an order


@elementwise
def _first_sum(sums, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    return (sums[0],)


@elementwise
def _second_sum(sums, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    return (sums[1],)


def _documented_sums(terms, dtype):
    """The order the CPU kernels document (adamnb.backends.cpu), written with NumPy: element i
    of a chunk into lane i % SUM_LANES, each lane in order, the lanes in order, the chunks in
    order, every addition rounded to ``dtype``."""
    sums = np.zeros(len(terms), dtype)
    for first in range(0, terms.shape[1], cpu.SUM_CHUNK):
        chunk = terms[:, first:first + cpu.SUM_CHUNK]
        lanes = np.zeros((len(terms), cpu.SUM_LANES), dtype)
        for i in range(chunk.shape[1]):
            lanes[:, i % cpu.SUM_LANES] += chunk[:, i]  # NumPy rounds each addition to dtype
        partial = np.zeros(len(terms), dtype)
        for lane in range(cpu.SUM_LANES):
            partial += lanes[:, lane]
        sums += partial
    return sums


_SUMS_OF = {}


def _sums_of(parallel):
    """A compiled function giving the two sums of :func:`_signed_terms` as the CPU kernels take
    them (each pass's last scalar is its finish's sum), made once per loop kind."""
    if parallel not in _SUMS_OF:
        first_pass, second_pass = (
            cpu.step_scalars_of(dataclasses.replace(RULES["lamb"], name=f"lamb_{finish.__name__}",
                                                    reduce=_signed_terms, finish=finish), parallel)
            for finish in (_first_sum, _second_sum))

        @numba.njit
        def sums_of(x, g, state, carry, c):
            return (first_pass(x, g, state.copy(), carry, c)[-1],
                    second_pass(x, g, state.copy(), carry, c)[-1])

        _SUMS_OF[parallel] = sums_of
    return _SUMS_OF[parallel]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("n", [1, 17, cpu.SUM_CHUNK + cpu.SUM_LANES + 5])
def test_sums_follow_the_documented_order(n, parallel, dtype):
    sums_of = _sums_of(parallel)
    rng = np.random.default_rng(n)
    x = (rng.normal(size=n) * 10.0 ** rng.integers(-8, 8, size=n)).astype(dtype)
    x[::7] = -0.0
    g = rng.normal(size=n).astype(dtype)
    c = tuple(dtype(0.5) for _ in range(11))
    got = np.array(sums_of(x, g, np.zeros((2, n), dtype), np.zeros(0, dtype), c), dtype)
    want = _documented_sums(np.stack([x, x * g]), dtype)
    assert got.tobytes() == want.tobytes()
    # all terms -0.0: each sum starts from 0.0 (padding the last row with -0.0 adds nothing)
    zeros = np.full(n, -0.0, dtype)
    got = np.array(sums_of(zeros, np.ones(n, dtype), np.zeros((2, n), dtype),
                           np.zeros(0, dtype), c), dtype)
    assert got.tobytes() == _documented_sums(np.stack([zeros, zeros]), dtype).tobytes()


def test_a_rules_reduce_gets_carry_as_the_array_documented():
    # UpdateRule documents carry as an array: a reduce may ask for its size (as on CUDA)
    prodigy = RULES["prodigy"]
    prodigy_reduce = prodigy.reduce

    @elementwise
    def sized_reduce(x, g, state, i, carry, c):
        (first, one_minus_beta1, beta1, one_minus_beta2, beta2, beta3, lr, bias_correction,
         estim_lr0, estim_lr_coef, eps, minus_weight_decay, safeguard_warmup) = c
        return prodigy_reduce(x, g * (carry.size / 2), state, i, carry, c)  # g * 1.0

    copy = dataclasses.replace(prodigy, name="prodigy_sized_carry", reduce=sized_reduce)
    c = (1.0, 0.1, 0.9, 0.001, 0.999, 0.9995, 1.0, 0.03, 1e-6, 1.0, 1e-8, -0.0, 0.0)
    runs = []
    for rule in (prodigy, copy):
        x, g = np.linspace(-1.0, 1.0, 37), np.cos(np.arange(37.0))
        cpu.cpu_kernel(rule, False)(x, g, np.zeros((4, 37)), np.array([1e-6, 0.0]), c)
        runs.append(x)
    assert runs[0].tobytes() == runs[1].tobytes()


_TWO_COPIES = """
import dataclasses
from adamnb.backends.jit import elementwise
from adamnb.optim import RULES
from adamnb.optim.rules.lamb import lamb_reduce


@elementwise
def reduce_a(x, g, state, i, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    return lamb_reduce(x, g, state, i, carry, c)


@elementwise
def reduce_b(x, g, state, i, carry, c):
    (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
     eps_root, eps, weight_decay, lr, one) = c
    parameter_square, update_square = lamb_reduce(x, g, state, i, carry, c)
    return (4.0 * parameter_square, update_square)


A = dataclasses.replace(RULES["lamb"], reduce=reduce_a)
B = dataclasses.replace(RULES["lamb"], reduce=reduce_b)
"""

_STEP_WITH = """
import sys
import numpy as np
import two_copies
from adamnb.backends import cpu

rule = getattr(two_copies, sys.argv[1])
g = np.cos(np.arange(100.0))
c = (0.1, 0.9, 0.001, 0.999, 0.1, 0.001, 0.0, 1e-6, 0.0, 0.01, 1.0)
x, fresh = np.linspace(-1, 1, 100), np.linspace(-1, 1, 100)
cpu.cpu_kernel(rule, False)(x, g, np.zeros((2, 100)), np.zeros(0), c)
cpu._build_cpu_kernel(rule, False, cache=False)(fresh, g, np.zeros((2, 100)), np.zeros(0), c)
print(x.tobytes() == fresh.tobytes())
"""


def test_copies_with_another_reduce_do_not_share_a_disk_cache_entry(tmp_path):
    # Two copies of LAMB from one file, each with its own reduce, built in two processes: the
    # second must not load the first one's kernel from numba's disk cache (their first passes
    # are generated under the same rule name).
    (tmp_path / "two_copies.py").write_text(textwrap.dedent(_TWO_COPIES))
    (tmp_path / "step_with.py").write_text(textwrap.dedent(_STEP_WITH))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), root]))
    for name in ("A", "B"):
        run = subprocess.run([sys.executable, str(tmp_path / "step_with.py"), name], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "True", f"rule {name} ran another rule's cached kernel"


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("groups, error, message", [
    ({"params": slice(0, 4)}, TypeError, "list of dicts"),
    ([], ValueError, "empty"),
    ([{"params": slice(0, 4)}, {"params": (3, 10)}], ValueError, "overlap"),
    ([{"params": slice(0, 4)}, {"params": (5, 10)}], ValueError, r"elements 4\.\.4"),
    ([{"params": (0, 10, (3, 3))}], ValueError, "shape"),
    ([{"params": slice(0, 10, 2)}], ValueError, "step"),
    ([{"params": (0, 10)}, {"lr": 0.1}], ValueError, "no 'params'"),
    ([{"params": (0, 10), "betas": (0.9, 0.99)}], ValueError, "unknown option"),
    ([{"params": (0, 10), "lr": -1.0}], ValueError, "Invalid lr"),
    ([{"params": (0, 10), "method": "sgd"}], ValueError, "method"),
    ([{"params": "all"}], TypeError, "not a view"),
])
def test_bad_groups_are_refused_with_the_problem_named(groups, error, message):
    with pytest.raises(error, match=message):
        adamnb.Adam(groups).step(np.zeros(10), np.ones(10))
    with pytest.raises(error, match=message):
        adamnb.minimize(lambda x: (0.0, x.copy()), np.zeros(10), jac=True,
                        options={"groups": groups, "maxiter": 1})


def test_rules_that_need_or_refuse_groups_say_so():
    with pytest.raises(ValueError, match="give groups whose views have a 2-D shape"):
        adamnb.Muon()
    # groups without a single matrix: nothing would use Muon (torch's Muon refuses them too)
    with pytest.raises(ValueError, match="no group has a view with a 2-D shape"):
        adamnb.Muon([{"params": (0, 8)}])
    with pytest.raises(ValueError, match="no group has a view with a 2-D shape"):
        adamnb.minimize(lambda x: (0.0, x.copy()), np.zeros(8), method="muon", jac=True,
                        options={"groups": [{"params": (0, 8)}], "maxiter": 1})
    with pytest.raises(ValueError, match="runs without groups"):
        adamnb.Prodigy([{"params": (0, 10)}])
    with pytest.raises(ValueError, match="minimize_batch runs without groups"):
        adamnb.minimize_batch(adamnb.functions.get("rosenbrock").value_and_grad,
                              np.zeros((2, 2)), options={"groups": [{"params": (0, 2)}]})
    # a group of Muon's without matrices runs another rule, which takes only its own options
    with pytest.raises(ValueError, match="unknown option"):
        adamnb.Muon([{"params": (0, 4, (2, 2))}, {"params": (4, 6), "ns_steps": 3}]).step(
            np.zeros(6), np.ones(6))


@pytest.mark.parametrize("method, options", [("muon", {"lr": 0.02}), ("adafactor", {"lr": 0.05})])
def test_matrix_steps_keep_float32_and_match_the_reference_to_its_rounding(method, options):
    shape, n = (6, 5), 30
    rng = np.random.default_rng(8)
    x0 = rng.normal(size=n).astype(np.float32)

    def grad(x, t):
        return (0.5 * x + np.sin(t * np.arange(1, n + 1))).astype(x.dtype)

    optimizer = adamnb.optim.OPTIMIZERS[method]([{"params": (0, n, shape, "F")}], **options)
    ours = run_class(optimizer, x0, grad, steps=20)
    assert all(x.dtype == np.float32 for x in ours)
    assert all(a.dtype == np.float32 for state in optimizer.state for a in state)
    want = reference_run(method, x0.astype(np.float64), grad, steps=20, shape=shape, order="F",
                         **options)
    np.testing.assert_allclose(ours[-1], want[-1], rtol=1e-4, atol=1e-5)


def test_a_copied_rule_with_another_reduce_sums_its_own_terms():
    """A rule copied with dataclasses.replace keeps its name; its sums must come from its own
    ``reduce``. The generated sums were published under the rule's name, so the copy computed
    with LAMB's (trust ratio 2.16 here instead of 1)."""
    lamb = RULES["lamb"]
    lamb_reduce = lamb.reduce

    @elementwise
    def no_parameter_norm(x, g, state, i, carry, c):
        (one_minus_beta1, beta1, one_minus_beta2, beta2, bias_correction1, bias_correction2,
         eps_root, eps, weight_decay, lr, one) = c
        terms = lamb_reduce(x, g, state, i, carry, c)
        return (x * 0.0, terms[1])  # ||x|| = 0: optax's trust ratio is then 1

    copy = dataclasses.replace(lamb, reduce=no_parameter_norm)
    x, g = np.array([3.0, -2.0, 1.0]), np.array([0.1, 0.2, -0.3])
    c = (0.1, 0.9, 0.001, 0.999, 0.1, 0.001, 0.0, 1e-6, 0.0, 0.1, 1.0)
    ratios = []
    for rule in (lamb, copy):
        scalars = cpu.step_scalars_of(rule, False)

        @numba.njit
        def trust_ratio(x, g, state, carry, c):
            return scalars(x, g, state, carry, c)[-1]

        ratios.append(trust_ratio(x.copy(), g, np.zeros((2, 3)), np.zeros(0), c))
    assert ratios[0] != 1.0 and ratios[1] == 1.0
