"""Cross-check the NumPy reference (tests/reference.py), and adamnb's own rules, against
torch.optim.

torch is used only here, as an independent check of the oracle; it runs the
single-tensor code path (``foreach=False``) on CPU in float64. The optax rules have their
cross-check in tests/test_reference_optax.py.
"""

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from reference import DEFAULTS, NOT_IN_TORCH, radam_rho_t, reference_run  # noqa: E402

import adamnb  # noqa: E402

torch = pytest.importorskip("torch")

N = 7
STEPS = 80
RTOL, ATOL = 1e-12, 1e-14


def make_problem(n=N, steps=STEPS, seed=0):
    """Deterministic gradient g(x, t) = A x + b_t (noisy quadratic), and x0."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, n))
    a = q @ q.T / n + 0.1 * np.eye(n)  # SPD, not too well conditioned
    b = rng.normal(size=(steps + 1, n))
    x0 = rng.normal(size=n) * 2.0

    def grad(x, t):
        return (a.astype(x.dtype) @ x + b[t - 1].astype(x.dtype)).astype(x.dtype)

    return x0, grad


TORCH_CLASS = {
    "sgd": "SGD",
    "adagrad": "Adagrad",
    "rmsprop": "RMSprop",
    "adadelta": "Adadelta",
    "adam": "Adam",
    "amsgrad": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "NAdam",
    "radam": "RAdam",
    "rprop": "Rprop",
    "asgd": "ASGD",
}
#: adamnb's split options -> torch's tuple, as betas.
TUPLES = {"betas": ("beta1", "beta2"), "etas": ("eta_minus", "eta_plus"),
          "step_sizes": ("step_size_min", "step_size_max")}


def torch_kwargs(method, options):
    """torch's keyword arguments for adamnb's options (split tuples joined again)."""
    kwargs = dict(options)
    for joined, (first, second) in TUPLES.items():
        if first in kwargs or second in kwargs:
            d = DEFAULTS[method]
            kwargs[joined] = (kwargs.pop(first, d.get(first)), kwargs.pop(second, d.get(second)))
    if method == "amsgrad":
        kwargs["amsgrad"] = True
    return kwargs


def torch_run(method, x0, grad, steps, lr_schedule=None, optimizer=None, **options):
    """Same contract as reference_run, implemented with torch.optim (``optimizer``, a list, gets
    the torch optimizer, for its state)."""
    kwargs = torch_kwargs(method, options)
    p = torch.nn.Parameter(torch.tensor(x0.copy()))
    opt = getattr(torch.optim, TORCH_CLASS[method])([p], foreach=False, **kwargs)
    out = []
    for t in range(1, steps + 1):
        if lr_schedule is not None:
            opt.param_groups[0]["lr"] = lr_schedule(t)
        x = p.detach().numpy().copy()
        p.grad = torch.from_numpy(np.ascontiguousarray(grad(x, t)))
        opt.step()
        out.append(p.detach().numpy().copy())
    if optimizer is not None:
        optimizer.append((opt, p))
    return out


def assert_runs_close(got, want, rtol=RTOL, atol=ATOL):
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want), start=1):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"step {t}")


CASES = [
    ("sgd", {}),
    ("sgd", dict(lr=0.05)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.7, dampening=0.5, weight_decay=0.2)),
    ("adagrad", {}),
    ("adagrad", dict(lr=0.3)),
    ("adagrad", dict(lr=0.3, lr_decay=0.05)),
    ("adagrad", dict(lr=0.3, initial_accumulator_value=0.5)),
    ("adagrad", dict(lr=0.3, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.1, eps=1e-6)),
    ("rmsprop", {}),
    ("rmsprop", dict(lr=0.02, alpha=0.9)),
    ("rmsprop", dict(lr=0.02, centered=True)),
    ("rmsprop", dict(lr=0.01, momentum=0.9)),
    ("rmsprop", dict(lr=0.01, momentum=0.5, centered=True, alpha=0.95)),
    ("rmsprop", dict(lr=0.02, weight_decay=0.1, momentum=0.3, eps=1e-4)),
    ("adadelta", {}),
    ("adadelta", dict(lr=0.5, rho=0.95)),
    ("adadelta", dict(rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("adam", {}),
    ("adam", dict(lr=0.05)),
    ("adam", dict(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6)),
    ("adam", dict(lr=0.05, weight_decay=0.1)),
    ("adam", dict(lr=0.05, amsgrad=True, weight_decay=0.05)),
    ("amsgrad", {}),
    ("amsgrad", dict(lr=0.05, beta2=0.9)),
    ("adamw", {}),
    ("adamw", dict(lr=0.05, weight_decay=0.1)),
    ("adamw", dict(lr=0.05, weight_decay=0.0)),
    ("adamw", dict(lr=0.05, amsgrad=True, weight_decay=0.2, beta2=0.95)),
    ("adamax", {}),
    ("adamax", dict(lr=0.05)),
    ("adamax", dict(lr=0.05, beta1=0.8, beta2=0.9, weight_decay=0.1)),
    ("nadam", {}),
    ("nadam", dict(lr=0.05)),
    ("nadam", dict(lr=0.05, momentum_decay=0.05, weight_decay=0.1)),
    ("nadam", dict(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6)),
    ("radam", {}),
    ("radam", dict(lr=0.05)),
    ("radam", dict(lr=0.05, beta1=0.8, beta2=0.99, weight_decay=0.1)),
    # torch's maximize, on every rule that has it, and decoupled_weight_decay (torch 2.x)
    ("sgd", dict(lr=0.01, momentum=0.9, maximize=True)),
    ("adagrad", dict(lr=0.3, maximize=True, weight_decay=0.1)),
    ("rmsprop", dict(lr=0.01, centered=True, maximize=True)),
    ("adadelta", dict(maximize=True)),
    ("adam", dict(lr=0.05, maximize=True, weight_decay=0.1)),
    ("adamw", dict(lr=0.05, maximize=True, amsgrad=True)),
    ("adamax", dict(lr=0.05, maximize=True)),
    ("nadam", dict(lr=0.05, maximize=True)),
    ("nadam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("radam", dict(lr=0.05, maximize=True)),
    ("radam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("rprop", {}),
    ("rprop", dict(lr=0.05, eta_minus=0.3, eta_plus=1.5)),
    ("rprop", dict(lr=0.05, step_size_min=0.01, step_size_max=0.2, maximize=True)),
    ("asgd", {}),
    ("asgd", dict(lr=0.05, lambd=0.01, alpha=0.5, t0=10.0)),
    ("asgd", dict(lr=0.02, weight_decay=0.1, t0=3.0, maximize=True)),
]


class _Float64TorchDefault:
    """NAdam keeps mu_product in a tensor of torch's default dtype; make that float64."""

    def __enter__(self):
        self.old = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)

    def __exit__(self, *exc):
        torch.set_default_dtype(self.old)


def _case_id(case):
    method, opts = case
    return method + "-" + ("default" if not opts else ",".join(f"{k}={v}" for k, v in opts.items()))


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_torch_float64(case):
    method, opts = case
    x0, grad = make_problem()
    got = reference_run(method, x0, grad, steps=STEPS, **opts)
    # float64 torch default dtype only matters for NAdam's mu_product (see reference.py).
    with _Float64TorchDefault():
        want = torch_run(method, x0, grad, STEPS, **opts)
    assert_runs_close(got, want)
    # the run actually moved
    assert not np.allclose(got[-1], x0)


@pytest.mark.parametrize("method", sorted(TORCH_CLASS))
def test_lr_schedule_matches_torch(method):
    x0, grad = make_problem(seed=1)
    base = 0.05 if method != "adadelta" else 1.0

    def schedule(t):
        return base * (0.55 + 0.45 * math.cos(math.pi * t / STEPS))

    opts = dict(weight_decay=0.05) if method != "rprop" else {}
    if method == "sgd":
        opts.update(momentum=0.9)
    if method == "adagrad":
        opts.update(lr_decay=0.02)
    got = reference_run(method, x0, grad, lr_schedule=schedule, steps=STEPS, **opts)
    with _Float64TorchDefault():
        want = torch_run(method, x0, grad, STEPS, lr_schedule=schedule, **opts)
    assert_runs_close(got, want)


def test_nadam_float32_mu_product_difference():
    """Under torch's default dtype (float32) NAdam's mu_product is rounded to
    float32 each step; the reference keeps it in float64.  The iterates then
    agree only to ~1e-9 absolute (up to ~1e-6 relative on
    small components): float32 rounding of a scalar step-size coefficient."""
    assert torch.get_default_dtype() == torch.float32
    x0, grad = make_problem()
    for opts in ({}, dict(lr=0.05), dict(lr=0.05, momentum_decay=0.05)):
        got = reference_run("nadam", x0, grad, steps=STEPS, **opts)
        want = torch_run("nadam", x0, grad, STEPS, **opts)
        assert_runs_close(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("opts", [{}, dict(lr=0.02), dict(lr=0.02, beta2=0.99, weight_decay=0.1)])
def test_radam_both_branches(opts):
    steps = 200
    beta2 = opts.get("beta2", DEFAULTS["radam"]["beta2"])
    rho = [radam_rho_t(t, beta2) for t in range(1, steps + 1)]
    # independent formula: rho_inf - 2 t b2^t / (1 - b2^t)
    rho_inf = 2 / (1 - beta2) - 1
    assert np.allclose(rho, [rho_inf - 2 * t * beta2**t / (1 - beta2**t) for t in range(1, steps + 1)])
    assert rho[0] <= 5 and rho[-1] > 5  # un-rectified first, rectified later
    first_rect = next(t for t, r in enumerate(rho, start=1) if r > 5)
    assert 3 <= first_rect <= 10

    x0, grad = make_problem(steps=steps, seed=2)
    got = reference_run("radam", x0, grad, steps=steps, **opts)
    want = torch_run("radam", x0, grad, steps, **opts)
    assert_runs_close(got, want)


def test_radam_unrectified_step_is_plain_momentum():
    """Steps with rho_t <= 5: x <- x - lr m_hat (no adaptive denominator)."""
    x0, grad = make_problem()
    lr = 0.01
    xs = reference_run("radam", x0, grad, steps=2, lr=lr)
    g1 = grad(x0, 1)
    # t=1: m = 0.1 g, m_hat = g
    np.testing.assert_allclose(xs[0], x0 - lr * g1, rtol=1e-15, atol=0)


def test_defaults_match_torch_signatures():
    import inspect

    for method, cls_name in TORCH_CLASS.items():
        sig = inspect.signature(getattr(torch.optim, cls_name).__init__)
        torch_defaults = {k: p.default for k, p in sig.parameters.items()
                          if p.default is not inspect.Parameter.empty}
        for joined, (first, second) in TUPLES.items():
            if joined in torch_defaults:
                torch_defaults[first], torch_defaults[second] = torch_defaults.pop(joined)
        for key, value in DEFAULTS[method].items():
            if method == "amsgrad" and key == "amsgrad":
                assert value is True
                continue
            if key in NOT_IN_TORCH:  # another library's option, off by default
                assert key not in torch_defaults and value is False, (method, key)
                continue
            assert key in torch_defaults, (method, key)
            assert torch_defaults[key] == value, (method, key, torch_defaults[key], value)


@pytest.mark.parametrize("method", sorted(DEFAULTS))
def test_float32_stays_float32_and_inputs_untouched(method):
    x0_64, grad = make_problem()
    x0 = x0_64.astype(np.float32)
    x0_copy = x0.copy()
    xs = reference_run(method, x0, grad, steps=20, lr=0.01 if method != "adadelta" else 1.0)
    assert np.array_equal(x0, x0_copy)
    assert len(xs) == 20
    assert all(x.dtype == np.float32 and x.shape == x0.shape for x in xs)
    assert len({id(x) for x in xs}) == 20
    # float32 run stays close to the float64 run
    xs64 = reference_run(method, x0.astype(np.float64), grad, steps=20, lr=0.01 if method != "adadelta" else 1.0)
    np.testing.assert_allclose(xs[-1], xs64[-1], rtol=1e-4, atol=1e-5)


def test_float32_matches_torch_loosely():
    """float32 sanity check against torch (rounding order differs, so loose)."""
    x0_64, grad = make_problem()
    x0 = x0_64.astype(np.float32)
    for method, opts in CASES:
        got = reference_run(method, x0, grad, steps=30, **opts)
        with _Float64TorchDefault():  # only affects NAdam's scalar mu_product
            want = torch_run(method, x0, grad, 30, **opts)
        assert_runs_close(got, want, rtol=1e-4, atol=1e-5)


def test_api_errors():
    x0, grad = make_problem()
    with pytest.raises(TypeError):
        reference_run("adam", x0, grad)  # steps missing
    with pytest.raises(TypeError):
        reference_run("adam", x0, grad, steps=3, momentum=0.9)  # not an Adam option
    with pytest.raises(ValueError):
        reference_run("no_such_rule", x0, grad, steps=3)
    with pytest.raises(ValueError):
        reference_run("sgd", x0, grad, steps=3, nesterov=True)  # torch: needs momentum
    # betas tuple accepted as alias
    a = reference_run("adam", x0, grad, steps=5, betas=(0.8, 0.99))
    b = reference_run("adam", x0, grad, steps=5, beta1=0.8, beta2=0.99)
    assert all(np.array_equal(u, w) for u, w in zip(a, b))
    # "amsgrad" == adam(amsgrad=True)
    a = reference_run("amsgrad", x0, grad, steps=5, lr=0.1)
    b = reference_run("adam", x0, grad, steps=5, lr=0.1, amsgrad=True)
    assert all(np.array_equal(u, w) for u, w in zip(a, b))


# --- adamnb's rules against torch directly (issue 15's acceptance: 60 steps, float64) ---------

DIRECT_STEPS, DIRECT_RTOL = 60, 1e-10
#: Every option issue 15 added to a torch rule, and the torch rules it added.
DIRECT_CASES = [case for case in CASES
                if case[0] in ("rprop", "asgd") or "maximize" in case[1]
                or "decoupled_weight_decay" in case[1]]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=[_case_id(c) for c in DIRECT_CASES])
def test_adamnb_matches_torch_step_for_step(case):
    method, opts = case
    x0, grad = make_problem(steps=DIRECT_STEPS, seed=3)
    optimizer, x, ours = adamnb.optim.OPTIMIZERS[method](**opts), x0.copy(), []
    for t in range(1, DIRECT_STEPS + 1):
        optimizer.step(x, grad(x, t))
        ours.append(x.copy())
    torch_optimizer = []
    with _Float64TorchDefault():  # ASGD's eta and mu, NAdam's mu_product: float64 tensors
        want = torch_run(method, x0, grad, DIRECT_STEPS, optimizer=torch_optimizer, **opts)
    assert_runs_close(ours, want, rtol=DIRECT_RTOL, atol=1e-13)
    assert not np.allclose(ours[-1], x0)
    if method == "asgd":  # the averaged iterate, torch's state["ax"]
        opt, p = torch_optimizer[0]
        np.testing.assert_allclose(optimizer.outputs(x)["ax"], opt.state[p]["ax"].numpy(),
                                   rtol=DIRECT_RTOL, atol=1e-13)


def test_asgd_average_of_the_reference_matches_torch():
    x0, grad = make_problem()
    for opts in (dict(lr=0.05, t0=10.0), dict(lr=0.02, lambd=0.01, alpha=0.5, t0=0.0)):
        _, extras = reference_run("asgd", x0, grad, steps=STEPS, outputs=True, **opts)
        torch_optimizer = []
        with _Float64TorchDefault():
            torch_run("asgd", x0, grad, STEPS, optimizer=torch_optimizer, **opts)
        opt, p = torch_optimizer[0]
        np.testing.assert_allclose(extras["ax"], opt.state[p]["ax"].numpy(), rtol=RTOL, atol=ATOL)


def test_asgd_minimize_reports_the_average_torch_keeps():
    x0, grad = make_problem(seed=4)
    opts = dict(lr=0.02, t0=5.0)
    res = adamnb.minimize(lambda x: 0.0, x0, method="asgd", jac=lambda x: grad(x, 1),
                          options={**opts, "maxiter": 30, "gtol": 0})
    torch_optimizer = []
    with _Float64TorchDefault():
        want = torch_run("asgd", x0, lambda x, t: grad(x, 1), 30, optimizer=torch_optimizer,
                         **opts)
    opt, p = torch_optimizer[0]
    np.testing.assert_allclose(res.x, want[-1], rtol=DIRECT_RTOL)
    np.testing.assert_allclose(res.ax, opt.state[p]["ax"].numpy(), rtol=DIRECT_RTOL)
    assert not np.allclose(res.ax, res.x)  # averaging started at step 6
