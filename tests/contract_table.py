"""The options x front-ends table: every rule's every hyperparameter at a non-default value, run
through every front end a user can take, against the independent reference (tests/reference.py).

Modelled on optax's alias tests and torch's OptimizerInfo database: one table of (rule, option)
rows, each with the options to run and the base it must differ from (the same options without the
one under test), crossed with the front ends by tests/test_contract.py (host) and
tests/test_cuda_contract.py (the device driver, in numba's CUDA simulator). A rule, or an option of
a rule, without a row here fails ``test_every_hyperparameter_of_every_rule_has_a_row``.

Adding a rule: its module in adamnb/optim/rules/, its reference in tests/reference.py, and its rows
here.
"""

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


def _adam_family(amsgrad_row=True):
    rows = {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
            "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5}}
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
            "nesterov": ({"momentum": 0.9, "nesterov": True}, {"momentum": 0.9})},
    "adagrad": {"lr": {"lr": 0.05}, "lr_decay": {"lr_decay": 0.1},
                "weight_decay": {"weight_decay": 0.5},
                "initial_accumulator_value": {"initial_accumulator_value": 100.0},
                "eps": {"eps": 1.0}},
    "rmsprop": {"lr": {"lr": 0.003}, "alpha": {"alpha": 0.9}, "eps": {"eps": 1.0},
                "weight_decay": {"weight_decay": 0.5}, "momentum": {"momentum": 0.8},
                "centered": {"centered": True}},
    "adadelta": {"lr": {"lr": 0.5}, "rho": {"rho": 0.5}, "eps": {"eps": 1e-3},
                 "weight_decay": {"weight_decay": 0.5}},
    "adam": _adam_family(),
    "amsgrad": _adam_family(amsgrad_row=False),
    "adamw": _adam_family(),
    "adamax": {"lr": {"lr": 0.01}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.9},
               "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5}},
    "nadam": {**_adam_family(amsgrad_row=False), "momentum_decay": {"momentum_decay": 0.5}},
    "radam": {"lr": {"lr": 5e-4}, "beta1": {"beta1": 0.5}, "beta2": {"beta2": 0.5},
              "eps": {"eps": 1.0}, "weight_decay": {"weight_decay": 0.5}},
}


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
    """The reference's iterate after ``steps`` steps on Rosenbrock from ``x0``."""
    return reference_run(method, np.array(x0, dtype=float), lambda x, t: rosen_der(x),
                         steps=steps, **options)[-1]


def minimize_options(options):
    return {**options, "maxiter": STEPS, "gtol": 0.0}


# --- the host front ends: each returns the final x of STEPS steps from X0 on Rosenbrock ----------

#: Methods without a class of their own: the class that runs them (with the method's fixed options).
CLASS_OF = {"amsgrad": "adam"}


def run_class(method, options):
    cls = OPTIMIZERS[CLASS_OF.get(method, method)]
    options = {**RULES[method].fixed, **options}
    x = X0.copy()
    optimizer = cls(**options)
    for _ in range(STEPS):
        optimizer.step(x, rosen_der(x))
    return x


def run_python(method, options):
    res = adamnb.minimize(lambda x: rosen(x), X0, method=method, jac=lambda x: rosen_der(x),
                          options=minimize_options(options))
    return res.x


def run_compiled(method, options):
    rosenbrock = adamnb.functions.get("rosenbrock")
    # A run this short takes the host loop by default (compiling would cost more than the run):
    # compiled=True asks for the compiled loop.
    res = adamnb.minimize(rosenbrock.value_and_grad, X0, method=method, jac=True,
                          options={**minimize_options(options), "compiled": True})
    return res.x


def run_batch(method, options):
    rosenbrock = adamnb.functions.get("rosenbrock")
    starts = np.stack([X0, X0 + np.array([0.05, -0.05])])
    res = adamnb.minimize_batch(rosenbrock.value_and_grad, starts, method=method, jac=True,
                                options=minimize_options(options))
    return res.x


def run_scipy(method, options):
    import scipy.optimize

    res = scipy.optimize.minimize(rosen, X0, method=getattr(adamnb, method), jac=rosen_der,
                                  options=minimize_options(options))
    return res.x


def run_cli(method, options, capsys):
    from adamnb import cli

    argv = ["minimize", "rosenbrock", "--method", method, "--maxiter", str(STEPS), "--gtol", "0",
            "--json"]
    for name, value in options.items():
        argv += ["--option", f"{name}={value!r}"]
    assert cli.main(argv) == 0
    return np.array(json.loads(capsys.readouterr().out)["x"])
