"""Update rules, optimizer classes and learning-rate schedules: what a torch.optim reader looks for.

* :mod:`adamnb.optim.rules` -- the rule registry, one module per rule family: each rule's
  per-element math, its per-step scalars by name, its options with defaults and validation,
  written once and compiled for every kernel.
* :mod:`adamnb.optim.optimizers` -- the stateful classes (``Adam(lr=1e-3).step(x, g)``), one per
  rule, generated from the registry, with ``state_dict`` / ``load_state_dict`` and a pickle-free
  :func:`save_state_dict` / :func:`load_state_dict`.
* :mod:`adamnb.optim.schedules` -- learning-rate schedules ``lr(t)``.
* :mod:`adamnb.optim.groups` -- parameter groups over the flat vector; :mod:`adamnb.optim.matrix`
  -- the matrix steps' arithmetic (Muon, Adafactor's factored moments), host and GPU.
* :class:`UpdateRule`, :class:`Hyperparameter`, :class:`CoefficientStream` -- what a rule is.
"""

from adamnb.optim import schedules
from adamnb.optim._rule import CoefficientStream, Hyperparameter, UpdateRule
from adamnb.optim.optimizers import (OPTIMIZERS, Optimizer, load_state_dict,  # noqa: F401
                                     save_state_dict)
from adamnb.optim.rules import RULES, get_rule

# The classes (Adam, SGD, ...), one per rule with a class of its own.
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})

__all__ = ["RULES", "get_rule", "UpdateRule", "Hyperparameter", "CoefficientStream", "schedules",
           "OPTIMIZERS", "Optimizer", "save_state_dict", "load_state_dict",
           *(cls.__name__ for cls in OPTIMIZERS.values())]
