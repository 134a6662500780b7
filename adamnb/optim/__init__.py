"""Update rules, optimizer classes and learning-rate schedules: what a torch.optim reader looks for.

* :mod:`adamnb.optim.rules` -- the rule registry: each rule's per-element math, its per-step
  scalars, its options with defaults and validation, written once and compiled for every kernel.
* :mod:`adamnb.optim.optimizers` -- stateful classes (``Adam(lr=1e-3).step(x, g)``) for
  hand-written training loops, with ``state_dict`` / ``load_state_dict``.
* :mod:`adamnb.optim.schedules` -- learning-rate schedules ``lr(t)``.
"""

from adamnb.optim import schedules
from adamnb.optim.optimizers import (
                                     OPTIMIZERS,
                                     SGD,
                                     Adadelta,
                                     Adagrad,
                                     Adam,
                                     Adamax,
                                     AdamW,
                                     NAdam,
                                     Optimizer,
                                     RAdam,
                                     RMSprop,
)
from adamnb.optim.rules import RULES, UpdateRule, get_rule

__all__ = ["RULES", "UpdateRule", "get_rule", "schedules", "OPTIMIZERS", "Optimizer", "SGD",
           "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam"]
