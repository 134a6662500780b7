"""The rule registry: every update rule adamnb has, one module per rule family.

Each module of this package defines its rules as :class:`adamnb.optim.UpdateRule` objects in a
module-level tuple ``RULES``; this package finds the modules by itself, so **adding a rule is
adding one module here** (plus its independent reference in ``tests/reference.py`` and its row in
the options x front-ends table of ``tests/test_contract.py``). From the registry come the method
names of :func:`adamnb.minimize`, the method callables (``adamnb.adam``), the optimizer classes
(``adamnb.Adam``), ``adamnb methods`` and :func:`adamnb.show_options`.

Formulas, defaults and option names are those of torch.optim's classes of the same names
(PyTorch 2.x), with ``betas`` split into ``beta1`` and ``beta2``; each rule's ``doc`` shows its
update in math beside the paper's where they differ.
"""

import importlib
import pkgutil

from adamnb.optim._rule import UpdateRule

__all__ = ["RULES", "VECTOR_RULES", "get_rule"]


def _discover():
    rules = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for rule in getattr(module, "RULES", ()):
            if not isinstance(rule, UpdateRule):
                raise TypeError(f"{module.__name__}.RULES holds {rule!r}, not an UpdateRule")
            if rule.name in rules:
                raise ValueError(f"two rules are named {rule.name!r}")
            rules[rule.name] = rule
    return {name: rules[name] for name in sorted(rules)}


#: Every rule by method name, in alphabetical order (the order shown to users).
RULES = _discover()

#: The rules that update a plain vector, element by element (all but the matrix-only rules,
#: Muon): the ones every kernel, the compiled loops, ``minimize_batch`` and a run without
#: parameter groups take, in :data:`RULES`' order.
VECTOR_RULES = {name: rule for name, rule in RULES.items() if rule.element is not None}


def get_rule(name):
    """The rule called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        No rule has that name; the message lists the valid ones.
    """
    if isinstance(name, str) and name.lower() in RULES:
        return RULES[name.lower()]
    raise ValueError(f"Unknown method {name!r}; valid methods are: {', '.join(RULES)}")
