"""Optimizer checkpoints: load_state_dict takes only what resumes the run exactly, and the
pickle-free save_state_dict / load_state_dict round trip gives the uninterrupted run's bits."""

import numpy as np
import pytest

import adamnb
from adamnb.optim import RULES, load_state_dict, save_state_dict, schedules
from tests.test_rules import CASE_IDS, CASES, make_gradient, optimizer_for

STEPS = 20


def _interrupted(method, options, dtype, store):
    """Run 10 steps, checkpoint through ``store``, resume in a new optimizer for 10 more."""
    grad = make_gradient()
    x = np.random.default_rng(5).normal(size=37).astype(dtype)
    opt = optimizer_for(method, **options)
    for t in range(1, 11):
        opt.step(x, grad(x, t))
    checkpoint = store(opt.state_dict())
    resumed = optimizer_for(method, **options)
    resumed.load_state_dict(checkpoint)
    for t in range(11, STEPS + 1):
        resumed.step(x, grad(x, t))
    return x


def _uninterrupted(method, options, dtype):
    grad = make_gradient()
    x = np.random.default_rng(5).normal(size=37).astype(dtype)
    opt = optimizer_for(method, **options)
    for t in range(1, STEPS + 1):
        opt.step(x, grad(x, t))
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method, options", CASES, ids=CASE_IDS)
def test_a_pickle_free_file_resumes_bit_for_bit(method, options, dtype, tmp_path):
    path = tmp_path / "state.npz"

    def store(state_dict):
        save_state_dict(state_dict, path)
        return load_state_dict(path)

    assert _interrupted(method, options, dtype, store).tobytes() == \
        _uninterrupted(method, options, dtype).tobytes()


@pytest.mark.parametrize("lr", [schedules.Warmup(schedules.InverseSqrt(0.05), 5),
                                schedules.Cosine(0.05, 30, 0.001), schedules.Step(0.05, 4, 0.5),
                                schedules.Exponential(0.05, 0.97), schedules.Constant(0.02)])
def test_built_in_schedules_are_saved_with_the_state(lr, tmp_path):
    path = tmp_path / "state.npz"

    def store(state_dict):
        save_state_dict(state_dict, path)
        loaded = load_state_dict(path)
        assert loaded["options"]["lr"] == lr
        return loaded

    assert _interrupted("nadam", {"lr": lr}, np.float64, store).tobytes() == \
        _uninterrupted("nadam", {"lr": lr}, np.float64).tobytes()


def test_the_file_is_read_without_pickle(tmp_path):
    opt = adamnb.Adam(lr=0.1)
    opt.step(np.ones(3), np.ones(3))
    path = tmp_path / "state.npz"
    save_state_dict(opt.state_dict(), path)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"meta", "state/exp_avg", "state/exp_avg_sq"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_users_callable_lr_cannot_be_saved_without_pickle(tmp_path):
    opt = adamnb.Adam(lr=lambda t: 0.1)
    with pytest.raises(TypeError, match="cannot be saved without pickle"):
        save_state_dict(opt.state_dict(), tmp_path / "state.npz")
    assert not list(tmp_path.iterdir())


def _nadam_checkpoint():
    opt = adamnb.NAdam(lr=0.01)
    x = np.ones(4)
    for _ in range(3):
        opt.step(x, x.copy())
    return opt.state_dict()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("scalars"), "missing \\['scalars'\\]"),
    (lambda s: s.update(scalars={}), "keeps exactly \\['mu_product'\\]"),
    (lambda s: s["scalars"].update(mu_product=float("nan")), "not a finite number"),
    (lambda s: s["options"].update(betas=(0.9, 0.99)), "not all options"),
    (lambda s: s.update(extra=1), "unknown \\['extra'\\]"),
    (lambda s: s["state"]["exp_avg"].__setitem__(0, np.nan), "holds NaN or inf"),
    (lambda s: s["state"].update(exp_avg=np.ones(3)), "differ in length"),
    (lambda s: s["state"].update(exp_avg=np.ones((2, 2))), "flat 1-D"),
    (lambda s: s["state"].pop("exp_avg_sq"), "expected \\['exp_avg', 'exp_avg_sq'\\]"),
    (lambda s: s.update(step=-1), "Invalid step"),
    (lambda s: s.update(step=1.5), "Invalid step"),
    (lambda s: s.update(method="adam"), "method 'adam', not 'nadam'"),
    (lambda s: s["options"].update(lr=-1.0), "Invalid lr"),
])
def test_a_broken_checkpoint_is_refused_and_changes_nothing(change, message):
    checkpoint = _nadam_checkpoint()
    change(checkpoint)
    opt = adamnb.NAdam(lr=0.5)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(checkpoint)
    assert opt.t == 0 and opt.state is None and opt.options["lr"] == 0.5


def test_a_zero_d_step_from_np_load_is_a_step():
    checkpoint = _nadam_checkpoint()
    checkpoint["step"] = np.array(3)
    opt = adamnb.NAdam(lr=0.01)
    opt.load_state_dict(checkpoint)
    assert opt.t == 3 and isinstance(opt.t, int)


@pytest.mark.parametrize("method", sorted(adamnb.optim.OPTIMIZERS))
def test_an_optimizer_pickles_after_steps_and_resumes_bit_for_bit(method):
    # torch.optim optimizers pickle; ours held a per-step coefficient stream of lambdas.
    import pickle

    rng = np.random.default_rng(3)
    x = rng.normal(size=7)
    grads = [rng.normal(size=7) for _ in range(6)]
    # Muon updates matrices: the vector as a 7 x 1 one, in a group (which must pickle too)
    groups = [{"params": (0, 7, (7, 1))}] if method == "muon" else None
    optimizer = adamnb.optim.OPTIMIZERS[method](backend="cpu", groups=groups)
    for g in grads[:3]:
        optimizer.step(x, g)
    clone, y = pickle.loads(pickle.dumps(optimizer)), x.copy()
    for g in grads[3:]:
        optimizer.step(x, g)
        clone.step(y, g)
    np.testing.assert_array_equal(x, y)


def _checkpoint_of(method):
    opt = adamnb.optim.OPTIMIZERS[method]()
    x = np.ones(6)
    for _ in range(3):
        opt.step(x, np.linspace(-1.0, 1.0, 6))
    return opt.state_dict()


# Every class but Muon (its matrix groups have their own case in test_groups.py).
CHECKPOINTED = sorted(set(adamnb.optim.OPTIMIZERS) - {"muon"})
#: The rules that declare scalars kept from step to step (host scalars such as NAdam's product of
#: momentum factors, or scalars carried inside the kernels such as Prodigy's estimate): their
#: checkpoints must hold them (asgd, nadam, novograd, prodigy, schedule_free_adamw today).
WITH_SCALARS = [m for m in CHECKPOINTED if RULES[m].scalar_state or RULES[m].carried]


@pytest.mark.parametrize("method", CHECKPOINTED)
def test_state_of_the_wrong_dtype_is_refused_and_changes_nothing(method):
    checkpoint = _checkpoint_of(method)
    if not checkpoint["state"]:
        pytest.skip(f"{method} keeps no state vectors here")
    names = sorted(checkpoint["state"])
    integer = {**checkpoint, "state": {**checkpoint["state"],
                                       names[0]: np.zeros(6, dtype=np.int64)}}
    opt = adamnb.optim.OPTIMIZERS[method]()
    with pytest.raises(TypeError, match="must have dtype float32 or float64"):
        opt.load_state_dict(integer)
    assert opt.t == 0 and opt.state is None
    if len(names) > 1:  # one float32 vector among float64 ones
        mixed = {**checkpoint, "state": {**checkpoint["state"],
                                         names[1]: checkpoint["state"][names[1]].astype(np.float32)}}
        with pytest.raises(ValueError, match="differ in length or dtype"):
            opt.load_state_dict(mixed)
        assert opt.t == 0 and opt.state is None


@pytest.mark.parametrize("method", WITH_SCALARS)
def test_missing_or_non_finite_scalars_are_refused_for_every_rule_that_keeps_them(method):
    checkpoint = _checkpoint_of(method)
    assert checkpoint["scalars"], f"{method} is listed as keeping scalars"
    missing = {k: v for k, v in checkpoint.items() if k != "scalars"}
    first = sorted(checkpoint["scalars"])[0]
    not_finite = {**checkpoint, "scalars": {**checkpoint["scalars"], first: float("nan")}}
    for broken, message in [(missing, "missing \\['scalars'\\]"),
                            ({**checkpoint, "scalars": {}}, "keeps exactly"),
                            (not_finite, "not a finite number")]:
        opt = adamnb.optim.OPTIMIZERS[method]()
        with pytest.raises(ValueError, match=message):
            opt.load_state_dict(broken)
        assert opt.t == 0 and opt.state is None


def test_the_rules_with_scalars_are_all_listed():
    keep = [m for m in CHECKPOINTED if _checkpoint_of(m).get("scalars")]
    assert keep == WITH_SCALARS


def test_load_state_dict_names_a_file_that_is_not_a_state(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("lr = 0.1\n")
    with pytest.raises(ValueError, match=r"not an adamnb optimizer state \(an .npz archive"):
        load_state_dict(text)
    single = tmp_path / "x.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="not an adamnb optimizer state.*single array"):
        load_state_dict(single)
