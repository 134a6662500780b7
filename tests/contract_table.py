"""The options x front-ends table: every rule's every hyperparameter at a non-default value, run
through every front end a user can take, against the independent reference (tests/reference.py).

Modelled on optax's alias tests and torch's OptimizerInfo database: one table of (rule, option)
rows, each with the options to run and the base it must differ from (the same options without the
one under test), crossed with the front ends by tests/test_contract.py (host) and
tests/test_cuda_contract.py (the device driver, in numba's CUDA simulator). A rule, or an option of
a rule, without a row here fails ``test_every_hyperparameter_of_every_rule_has_a_row``.

Adding a rule: its module in adamnb/optim/rules/, its reference in tests/reference.py, and its rows
here.

What is compared is a run's *result*: the reported ``x`` followed by the rule's extra outputs, in
the order of their names (ASGD's ``ax``; schedule-free AdamW's average replaces ``x``, and ``y``
and ``z`` follow), as the reference names them: an option that acts only on an output (ASGD's
``t0``) is seen too.
"""

import functools

import json

import numpy as np
from scipy.optimize import rosen, rosen_der

import adamnb
from adamnb.optim import OPTIMIZERS, RULES
from tests.reference import reference_run

#: Steps of every run, and the start: Rosenbrock's standard start, the CLI's default for it.
STEPS = 20
X0 = np.array([-1.2, 1.0])
#: Tolerance against the reference (float64; the reference's rounding differs in places, see its
#: notes) and the smallest relative change an option must make.
RTOL = 1e-10
MIN_CHANGE = 1e-9


#: torch's maximize: the same steps uphill; a small rate keeps 20 steps up Rosenbrock finite.
MAXIMIZE = ({"maximize": True, "lr": 1e-4}, {"lr": 1e-4})
#: torch 2.x's decoupled_weight_decay (NAdam, RAdam): the decay moves from g to x.
DECOUPLED = ({"decoupled_weight_decay": True, "weight_decay": 0.5}, {"weight_decay": 0.5})


def _adam_family(amsgrad_row=True, eps_hat_row=True):
    rows = {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
            "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5}, "maximize": MAXIMIZE}
    if eps_hat_row:
        rows["eps_hat"] = ({"eps_hat": True, "eps": 1.0}, {"eps": 1.0})
    if amsgrad_row:
        # AMSGrad only acts when the second moment shrinks: a short memory makes it shrink here.
        rows["amsgrad"] = ({"amsgrad": True, "beta2": 0.5}, {"beta2": 0.5})
    return rows


#: method -> option -> options, or (options, base) when the option needs companions to act (the
#: base is then the companions alone). Values keep 20 Rosenbrock steps finite.
TABLE = {
    "sgd": {"lr": {"lr": 2e-4}, "momentum": {"momentum": 0.9},
            "dampening": ({"momentum": 0.9, "dampening": 0.5}, {"momentum": 0.9}),
            "weight_decay": {"weight_decay": 0.5},
            "nesterov": ({"momentum": 0.9, "nesterov": True}, {"momentum": 0.9}),
            "maximize": ({"maximize": True, "lr": 1e-5}, {"lr": 1e-5})},
    "adagrad": {"lr": {"lr": 0.05}, "lr_decay": {"lr_decay": 0.1},
                "weight_decay": {"weight_decay": 0.5},
                "initial_accumulator_value": {"initial_accumulator_value": 100.0},
                "eps": {"eps": 1.0}, "maximize": MAXIMIZE},
    "rmsprop": {"lr": {"lr": 0.003}, "alpha": {"alpha": 0.9}, "eps": {"eps": 1.0},
                "weight_decay": {"weight_decay": 0.5}, "momentum": {"momentum": 0.8},
                "centered": {"centered": True}, "maximize": MAXIMIZE,
                "eps_in_sqrt": ({"eps_in_sqrt": True, "eps": 1.0}, {"eps": 1.0})},
    "adadelta": {"lr": {"lr": 0.5}, "rho": {"rho": 0.5}, "eps": {"eps": 1e-3},
                 "weight_decay": {"weight_decay": 0.5}, "maximize": MAXIMIZE},
    "adam": _adam_family(),
    "amsgrad": _adam_family(amsgrad_row=False),
    "adamw": _adam_family(),
    "adamax": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
               "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5}, "maximize": MAXIMIZE},
    "nadam": {**_adam_family(amsgrad_row=False, eps_hat_row=False),
              "momentum_decay": {"momentum_decay": 0.5},
              "decoupled_weight_decay": DECOUPLED},
    "radam": {"lr": {"lr": 5e-4}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.5},
              "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5},
              "decoupled_weight_decay": DECOUPLED, "maximize": MAXIMIZE},
    "rprop": {"lr": {"lr": 0.05}, "eta_minus": {"eta_minus": 0.2}, "eta_plus": {"eta_plus": 2.0},
              # a floor above the steps it would take, and a ceiling below them
              "step_size_min": {"step_size_min": 0.02}, "step_size_max": {"step_size_max": 5e-3},
              "maximize": MAXIMIZE},
    # ASGD's default lr, 1e-2, diverges on Rosenbrock as SGD's would: smaller rates throughout.
    "asgd": {"lr": ({"lr": 2e-4}, {"lr": 1e-4}),
             "lambd": ({"lambd": 0.5, "lr": 2e-4}, {"lr": 2e-4}),
             "alpha": ({"alpha": 0.1, "lambd": 100.0, "lr": 2e-4}, {"lambd": 100.0, "lr": 2e-4}),
             # t0 acts on the average only: averaging from step 5 on
             "t0": ({"t0": 5.0, "lr": 2e-4}, {"lr": 2e-4}),
             "weight_decay": ({"weight_decay": 0.5, "lr": 2e-4}, {"lr": 2e-4}),
             "maximize": ({"maximize": True, "lr": 1e-5}, {"lr": 1e-5})},
    # Lion steps by the sign: the betas act once the iterate moves far enough for signs to flip.
    "lion": {"lr": {"lr": 0.01}, "beta1": ({"beta1": 0.5, "lr": 0.01}, {"lr": 0.01}),
             "beta2": ({"beta2": 0.5, "lr": 0.01}, {"lr": 0.01}),
             "weight_decay": {"weight_decay": 0.5}},
    "yogi": {"lr": {"lr": 0.05}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
             "eps": {"eps": 1.0}, "initial_accumulator_value": {"initial_accumulator_value": 10.0}},
    "adabelief": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
                  "eps": {"eps": 1.0}, "eps_root": {"eps_root": 1.0},
                  "nesterov": {"nesterov": True}},
    "adan": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.5},
             "beta3": {"beta3": 0.5}, "eps": {"eps": 1.0}, "eps_root": {"eps_root": 1.0},
             "weight_decay": {"weight_decay": 0.5}},
    "adopt": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.5},
              "eps": {"eps": 1e3}, "nesterov": {"nesterov": True},
              # the clip acts where the gradient outgrows its average: large steps find that
              "use_clipping": ({"use_clipping": False, "lr": 1.0, "beta1": 0.5},
                               {"lr": 1.0, "beta1": 0.5})},
    "ademamix": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
                 "beta3": {"beta3": 0.5}, "alpha": {"alpha": 1.0}, "eps": {"eps": 1.0},
                 "eps_root": {"eps_root": 1.0}, "weight_decay": {"weight_decay": 0.5},
                 "alpha_warmup": {"alpha_warmup": 10},
                 "beta3_warmup": ({"beta3_warmup": 10, "beta3": 0.99}, {"beta3": 0.99})},
    "schedule_free_adamw": {"lr": {"lr": 0.01}, "warmup_steps": {"warmup_steps": 5},
                            "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
                            "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5},
                            # the power weighs the rates: it acts while they change (warm-up)
                            "weight_lr_power": ({"weight_lr_power": 0.0, "warmup_steps": 10},
                                                {"warmup_steps": 10})},
    "lamb": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
             "eps": {"eps": 1.0}, "eps_root": {"eps_root": 1.0},
             "weight_decay": {"weight_decay": 0.5}},
    "novograd": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
                 "eps": {"eps": 1.0}, "eps_root": {"eps_root": 1.0},
                 "weight_decay": {"weight_decay": 0.5}},
    "prodigy": {"lr": {"lr": 0.5}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
                "beta3": {"beta3": 0.5}, "eps": {"eps": 1e-3}, "estim_lr0": {"estim_lr0": 1e-3},
                "estim_lr_coef": {"estim_lr_coef": 2.0}, "weight_decay": {"weight_decay": 0.5},
                "safeguard_warmup": {"safeguard_warmup": True}},
    # Rosenbrock's gradients are large: eps1 acts above them, eps2 above the iterate's RMS, and
    # the clipping threshold d where larger steps make the update's RMS exceed 1.
    "adafactor": {"lr": {"lr": 1e-3}, "beta2_decay": {"beta2_decay": -0.5},
                  "eps1": {"eps1": 100.0}, "eps2": {"eps2": 2.0},
                  "d": ({"d": 1.2, "lr": 0.1}, {"lr": 0.1}),
                  "weight_decay": {"weight_decay": 0.5},
                  "maximize": ({"maximize": True, "lr": 1e-3}, {"lr": 1e-3})},
    # Muon updates matrices: the vector as one 1 x 2 matrix group (GROUPS); a, b, c with
    # a + b + c < 1 keep the Newton-Schulz iteration bounded.
    "muon": {"lr": {"lr": 0.01}, "weight_decay": {"weight_decay": 0.5},
             "momentum": {"momentum": 0.5}, "nesterov": {"nesterov": False},
             "ns_a": {"ns_a": 3.0}, "ns_b": {"ns_b": -4.6}, "ns_c": {"ns_c": 1.5},
             "eps": {"eps": 1e3}, "ns_steps": {"ns_steps": 2},
             "adjust_lr_fn": {"adjust_lr_fn": "match_rms_adamw"}},
}

#: The rules that update only matrices run with groups: the vector as one matrix, and the same
#: shape for the reference. minimize runs groups in its host loop (no compiled loop) and on the
#: device; minimize_batch takes no groups.
GROUPS = {"muon": [{"params": (0, 2, (1, 2))}]}
SHAPES = {"muon": {"shape": (1, 2)}}


def rows():
    """``(method, option, options, base)`` for every row of :data:`TABLE`."""
    out = []
    for method, entries in TABLE.items():
        for option, entry in entries.items():
            options, base = entry if isinstance(entry, tuple) else (entry, {})
            out.append((method, option, options, base))
    return out


ROWS = rows()
ROW_IDS = [f"{method}-{option}" for method, option, _, _ in ROWS]


def reference(method, options, x0=X0, steps=STEPS):
    """The reference's result (see the module notes) after ``steps`` steps on Rosenbrock from
    ``x0``."""
    iterates, extras = reference_run(method, np.array(x0, dtype=float),
                                     lambda x, t: rosen_der(x), steps=steps, outputs=True,
                                     **options, **SHAPES.get(method, {}))
    return result_vector(method, extras.get("x", iterates[-1]), extras)


@functools.lru_cache(maxsize=None)
def output_names(method):
    """The names of the rule's extra outputs beyond x, as the reference names them."""
    _, extras = reference_run(method, X0.copy(), lambda x, t: rosen_der(x), steps=1,
                              outputs=True, **SHAPES.get(method, {}))
    return tuple(sorted(set(extras) - {"x"}))


def result_vector(method, x, fields):
    """``x`` followed by the outputs :func:`output_names` lists, taken from ``fields`` (a result
    or a dict), along the last axis."""
    parts = [np.asarray(x)] + [np.asarray(fields[name]) for name in output_names(method)]
    return np.concatenate(parts, axis=-1)


def _result(method, res):
    return result_vector(method, res.x, res)


def minimize_options(options, method=None):
    grouped = {"groups": GROUPS[method]} if method in GROUPS else {}
    return {**options, **grouped, "maxiter": STEPS, "gtol": 0.0}


# --- the host front ends: each returns the final x of STEPS steps from X0 on Rosenbrock ----------

#: Methods without a class of their own: the class that runs them (with the method's fixed options).
CLASS_OF = {"amsgrad": "adam"}


def run_class(method, options):
    cls = OPTIMIZERS[CLASS_OF.get(method, method)]
    options = {**RULES[method].fixed, **options}
    x = X0.copy()
    optimizer = cls(**options, groups=GROUPS.get(method))
    for _ in range(STEPS):
        optimizer.step(x, rosen_der(x))
    outputs = optimizer.outputs(x)
    return result_vector(method, outputs.get("x", x), outputs)


def run_python(method, options):
    res = adamnb.minimize(lambda x: rosen(x), X0, method=method, jac=lambda x: rosen_der(x),
                          options=minimize_options(options, method))
    return _result(method, res)


def run_compiled(method, options):
    rosenbrock = adamnb.functions.get("rosenbrock")
    # A run this short takes the host loop by default (compiling would cost more than the run):
    # compiled=True asks for the compiled loop.
    res = adamnb.minimize(rosenbrock.value_and_grad, X0, method=method, jac=True,
                          options={**minimize_options(options, method), "compiled": True})
    return _result(method, res)


def run_batch(method, options):
    rosenbrock = adamnb.functions.get("rosenbrock")
    starts = np.stack([X0, X0 + np.array([0.05, -0.05])])
    res = adamnb.minimize_batch(rosenbrock.value_and_grad, starts, method=method, jac=True,
                                options=minimize_options(options, method))
    return _result(method, res)


def run_scipy(method, options):
    import scipy.optimize

    res = scipy.optimize.minimize(rosen, X0, method=getattr(adamnb, method), jac=rosen_der,
                                  options=minimize_options(options, method))
    return _result(method, res)


def run_cli(method, options, capsys):
    from adamnb import cli

    argv = ["minimize", "rosenbrock", "--method", method, "--maxiter", str(STEPS), "--gtol", "0",
            "--json"]
    for name, value in {**options, **({"groups": GROUPS[method]} if method in GROUPS
                                      else {})}.items():
        argv += ["--option", f"{name}={value!r}"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    return result_vector(method, printed["x"], printed)


def run_device(method, options, objective):
    """The device driver's result, on the host: ``objective`` is a CUDA objective of the
    Rosenbrock function (adamnb.problems.cuda_functions.rosenbrock)."""
    from numba import cuda

    res = adamnb.minimize(objective, cuda.to_device(X0), method=method, jac=True,
                          options=minimize_options(options, method))
    fields = {name: res[name].copy_to_host() for name in output_names(method)}
    return result_vector(method, res.x.copy_to_host(), fields)
