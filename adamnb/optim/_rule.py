"""What an update rule is: :class:`UpdateRule`, its options (:class:`Hyperparameter`) and the stream
of its per-step scalars (:class:`CoefficientStream`).

A rule is written once, in one module of :mod:`adamnb.optim.rules`, as:

* ``element(x, g, state, i, c)``: the whole per-element update, a plain Python function that
  numba compiles inline into every kernel (serial and threaded CPU loops, CUDA grid-stride
  kernels, the drivers' fused steps and compiled loops). It reads ``x[i]``'s value ``x`` and
  gradient ``g``, reads and writes the rule's state vectors ``state[k, i]`` and returns the new
  ``x``. It uses no literal constants, only its arguments, so float32 work stays float32 (a
  float64 literal would promote it).
* the per-step scalars ``c``: the element's first statement unpacks them by name
  (``a, b, ... = c``), which declares them and their order (``scalars``, taken from that
  statement; a rule with reductions declares them in its first pass, ``reduce``, and the
  element unpacks them followed by ``finished``).
* ``coefficients(options, t, lr, **series)``: the per-step scalars by name, in float64 on the
  host (as torch.optim computes its scalars in Python floats), vectorised over an array of step
  numbers ``t`` (1-based) and their learning rates ``lr``. A scalar of the standard vocabulary
  (:func:`standard_scalar`: an option by its name, ``one_minus_<option>``,
  ``bias_correction<k>`` = 1 - beta_k^t, ``lr``, ``one``) needs no entry; ``coefficients``
  gives the others (and may override a standard one). A name neither given nor standard, or a
  given name the element does not read, is an error, so a renaming or reordering on one side
  only is never a silent swap of two numbers.
* ``slots``: the state vectors, in row order, with torch's state names; ``rows(options)`` says how
  many a configuration uses (only the last optional slot in use adds a row); without it, every
  slot is in use.
* the options (:class:`Hyperparameter`: name, default, range) with the defining library's keyword
  names (torch's, ``betas`` split into ``beta1`` and ``beta2``; optax's ``b1``, ``b2``, ``b3``
  become ``beta1``, ``beta2``, ``beta3``), and ``doc``: the update in math with its sources, which
  becomes the docstring of the rule's optimizer class.
* optionally **reductions inside a step**, for rules whose update needs sums over the whole vector
  (or over one parameter group, :mod:`adamnb.optim.groups`): LAMB's trust ratio ``||x|| / ||u||``,
  Prodigy's distance estimate, Adafactor's update clipping. Such a rule declares ``reductions``
  (the names of the sums) and splits its step in two passes over the vector. The first,
  ``reduce(x, g, state, i, carry, c)``, updates the element's state and returns its term of each
  sum; the sums are taken, then ``finish(sums, carry, c)`` turns them (``sums``: the declared sums
  in order, then the number of elements summed over, all in x's dtype) into the further per-step
  scalars ``finished``, which the second pass, the ``element``, reads after the ``scalars`` (its
  first statement unpacks both). ``carried`` names scalars a rule carries from step to step that
  depend on the sums (Prodigy's distance estimate): ``advance(sums, carry, c)`` gives their new
  values from the old ones (``carry``, an array of x's dtype) once per step, after ``finish`` has
  read them. Every kernel runs the same two passes: the CPU kernels sum in fixed chunks
  (:mod:`adamnb.backends.cpu`), so the serial and threaded kernels give the same bits; the CUDA
  kernels reduce on the device (:mod:`adamnb.backends.cuda`).
* optionally ``outputs(options, x, state)``: what a run reports beside its iterate, computed on
  the host from the final ``x`` and state (ASGD's average ``ax``; schedule-free AdamW's evaluation
  point, which replaces ``x``). ``minimize`` puts them in its result, the classes give them from
  :meth:`adamnb.optim.Optimizer.outputs`.

Every driver and every optimizer class reads the scalars through one :class:`CoefficientStream`,
so they all take the same steps, to the bit.
"""

import ast
import inspect
import math
import os
import textwrap
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from adamnb.optim.schedules import Schedule, checked_rate, checked_rates

__all__ = ["Hyperparameter", "UpdateRule", "MatrixStep", "CoefficientStream", "power",
           "standard_scalar", "moment_options", "weight_decay_scalars",
           "lr_option", "beta_option", "eps_option", "eps_root_option", "WEIGHT_DECAY", "MAXIMIZE",
           "DECOUPLED_WEIGHT_DECAY", "RESERVED_OPTION_NAMES"]

#: Option names that belong to the drivers (``maxiter``, ``gtol`` ... of
#: :data:`adamnb.optimize.DRIVER_OPTIONS`), never to a rule: a rule whose hyperparameter took one
#: of them would have that option silently taken by the driver. Checked for every rule.
RESERVED_OPTION_NAMES = frozenset({"maxiter", "gtol", "tol", "disp", "return_all", "parallel",
                                   "finite_diff_rel_step", "compiled", "fast", "callback",
                                   "bounds", "args", "jac", "groups"})


@dataclass(frozen=True)
class Hyperparameter:
    """One option of an update rule: its default, its type and its allowed range.

    ``kind`` is "float", "int" (a whole number, e.g. a count of steps), "bool", "lr" (a float or
    a schedule) or "choice" (one of ``choices``, e.g. Muon's ``adjust_lr_fn``). ``low``/``high``
    bound a number; ``low_open``/``high_open`` make a bound strict. ``none_ok`` lets a number be
    None too (torch's ``eps=(None, 1e-3)`` of Adafactor, optax's ``beta3=None`` of Prodigy: the
    rule then derives the value).
    """

    name: str
    default: object
    doc: str
    kind: str = "float"
    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    none_ok: bool = False
    choices: tuple = ()

    def range_text(self):
        """The allowed values in words, e.g. ``0 <= beta1 < 1``."""
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return f"{self.name} one of {', '.join(map(repr, self.choices))}"
        if self.none_ok:
            return f"None or {self._number_range()}"
        return self._number_range()

    def _number_range(self):
        if math.isinf(self.low) and math.isinf(self.high):
            return f"{self.name} any real number"
        left = f"{self.low:g} {'<' if self.low_open else '<='} {self.name}"
        if math.isinf(self.high):
            return left
        return f"{left} {'<' if self.high_open else '<='} {self.high:g}"

    def validate(self, value):
        """Return ``value`` normalised (a float, a bool or a schedule).

        Any real scalar is accepted: Python and NumPy numbers, 0-d arrays and tensors (anything
        with ``__float__`` and no dimensions, as ``float()`` takes them).

        Raises
        ------
        ValueError
            The value is not of the option's kind, or out of its range; the message names the
            option and the range.
        """
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)) or (
                    isinstance(value, (int, np.integer)) and value in (0, 1)):
                return bool(value)
            raise ValueError(f"Invalid {self.name}: {value!r}; expected True or False")
        if self.kind == "choice":
            for choice in self.choices:
                if value is choice or (isinstance(value, str) and value == choice):
                    return choice
            raise ValueError(f"Invalid {self.name}: {value!r}; expected {self.range_text()}")
        if self.none_ok and value is None:
            return None
        if self.kind == "lr" and callable(value) and not hasattr(value, "__float__"):
            return value  # a schedule, checked at every step (adamnb.optim.schedules)
        number = _real_scalar(value)
        if number is None or (self.kind == "int" and not (math.isfinite(number)
                                                          and number == int(number))):
            what = "a whole number" if self.kind == "int" else "a real number"
            raise ValueError(f"Invalid {self.name}: {value!r}; expected {what} with "
                             f"{self.range_text()}")
        too_low = number <= self.low if self.low_open else number < self.low
        too_high = number >= self.high if self.high_open else number > self.high
        if math.isnan(number) or too_low or too_high or (math.isinf(number) and self.kind == "lr"):
            raise ValueError(f"Invalid {self.name}: {value!r}; expected {self.range_text()}")
        return int(number) if self.kind == "int" else number


def _real_scalar(value):
    """``float(value)`` for a real, dimensionless number (not a bool, string or complex), else
    None."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or not hasattr(value, "__float__"):
        return None
    if np.ndim(value) != 0 or np.iscomplexobj(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


#: The last step whose power :func:`power` keeps, per base (the base's cap, if that is lower):
#: at most 512 KiB of powers per base.
POWER_MEMO_STEPS = 1 << 16
#: The bases :func:`power` keeps powers for, the oldest dropped first.
POWER_MEMO_BASES = 16

_powers = {}  # float(base) -> (base ** min(k, cap) for k = 0, 1, ..., n - 1 in float64, cap)
_powers_lock = threading.Lock()


def _new_powers_lock():
    # A process forked while the scalars' thread held the lock (a sweep's worker, forked while a
    # run that has just converged still computes its next block) would wait for it forever.
    global _powers_lock
    _powers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_powers_lock)


def power(base, t):
    """``base ** t`` for step numbers ``t``, with the exponent capped where the power is below
    2**-200.

    pow is about 50 times slower when its result is subnormal (0.9 ** 20000 is), and past that cap
    nothing computed from the power changes: 1 - base**t rounds to exactly 1, and t * base**t (in
    RAdam's rho_t) is far below an ulp of the terms it is added to. Returns the same bits as
    ``base ** np.minimum(t, cap)`` (NumPy's ``pow`` of an array, which is not always the C
    library's that Python's float ``**`` calls).

    The powers of a base in (0, 1) for integer steps are computed once per process and kept
    (:data:`POWER_MEMO_STEPS` steps for each of :data:`POWER_MEMO_BASES` bases): a power costs
    some 4 ns in NumPy, a seventh of a compiled Adam step on a small problem, and every run with
    the same betas needs the same ones. The kept powers were computed by the same NumPy
    expression, so they are the same bits (``tests/test_loops.py``).
    """
    base, t = float(base), np.asarray(t)  # (a NumPy float32 base would round base ** cap)
    if 0.0 < base < 1.0 and t.ndim > 0 and t.size > 0 and t.dtype.kind in "iu":
        first, last = int(t.min()), int(t.max())
        # (take() reads its indices as intp: a larger uint64 would wrap to a negative index)
        if 0 <= first and last <= _LARGEST_INDEX:
            kept = _kept_powers(base, first, last, t.size)
            if kept is not None:
                # "clip": a step past the last kept one, the cap, reads the cap's power
                return kept.take(t, mode="clip")
    t = t.astype(np.float64, copy=False)
    if not 0.0 < base < 1.0:
        return base ** t
    cap = float(_power_cap(base))
    if t.ndim == 0 or t.max(initial=0.0) < cap:
        return base ** np.minimum(t, cap)
    # Past the cap every power is the same number: one pow for all of them (some 4 ns each;
    # beta1 = 0.9 reaches its cap at step 1316), NumPy's pow of an array like the others.
    powers = np.full(t.shape, (base ** np.full(1, cap))[0])
    below = t < cap
    powers[below] = base ** t[below]
    return powers


_LARGEST_INDEX = np.iinfo(np.intp).max


def _power_cap(base):
    """The first step whose power of ``base`` (in (0, 1)) is below 2**-200."""
    return int(200 * math.log(2.0) / -math.log(base)) + 1


def _kept_powers(base, first, last, count):
    """The kept powers ``base ** min(k, cap)`` of the steps ``k = 0, 1, ..., n - 1``, computed
    (and kept) where missing, for ``count`` steps from ``first`` to ``last``: n > last, or the
    powers end at the cap (a step past it then reads the last one). None where ``last`` is past
    what is kept, or where keeping would compute many more powers than the ``count`` asked for
    (a base dropped for others, asked for again far into a run: computing its powers from step 0
    at every block would cost more than computing the block's alone). The powers grow by
    doublings as runs go on."""
    kept = _powers.get(base)
    if kept is not None and (last < kept[0].size or kept[0].size == kept[1] + 1):
        return kept[0]
    cap = _power_cap(base)
    needed, limit = min(last, cap) + 1, min(cap, POWER_MEMO_STEPS) + 1
    have = 0 if kept is None else kept[0].size
    if needed > limit or needed - have > 2 * count + 1024:
        return None
    with _powers_lock:  # the scalars of a block can be computed on a second thread
        have = _powers[base][0] if base in _powers else np.empty(0)
        if have.size >= needed:
            return have
        size = min(limit, max(needed, 2 * have.size, 1024))
        grown = np.empty(size)
        grown[:have.size] = have
        grown[have.size:] = base ** np.minimum(np.arange(have.size, size, dtype=np.float64),
                                               float(cap))
        _powers.pop(base, None)
        while len(_powers) >= POWER_MEMO_BASES:
            del _powers[next(iter(_powers))]
        _powers[base] = (grown, cap)
        return grown


def standard_scalar(name, options, t, lr, rule="?"):
    """The value of a per-step scalar of the standard vocabulary, which no rule writes itself.

    * ``lr``: the step's learning rate; ``one``: 1 (a constant of x's dtype for the element,
      which may hold no literal);
    * an option's name: its value (True/False as 1/0);
    * ``one_minus_<option>``: 1 - the option (``one_minus_beta1`` = 1 - beta1);
    * ``bias_correction<k>``: Adam's bias correction 1 - beta_k^t of option ``beta<k>``
      (Kingma & Ba, 2014, Algorithm 1), with :func:`power`.

    ``t`` and ``lr`` are arrays of step numbers and rates (the result broadcasts over them).

    Raises
    ------
    ValueError
        ``name`` is not in the vocabulary, so the rule's ``coefficients`` must give it.
    """
    if name == "lr":
        return lr
    if name == "one":
        return 1.0
    if name in options and options[name] is not None:
        return float(options[name])
    if name.startswith("one_minus_") and options.get(name[10:]) is not None:
        return 1.0 - options[name[10:]]
    if name.startswith("bias_correction") and options.get("beta" + name[15:]) is not None:
        return 1.0 - power(options["beta" + name[15:]], t)
    raise ValueError(f"rule {rule!r}: its element reads the scalar {name!r}, which is not a "
                     "standard one (an option, one_minus_<option>, bias_correction<k>, lr, one) "
                     "and which its coefficients do not give")


def weight_decay_scalars(options, lr, decoupled):
    """The scalars ``weight_decay`` and ``decay_factor`` of torch's two kinds of weight decay.

    L2 (torch's Adam, NAdam, RAdam): ``g += weight_decay * x``, ``decay_factor`` 1. Decoupled
    (AdamW; NAdam and RAdam with ``decoupled_weight_decay=True``, Loshchilov & Hutter, 2019):
    ``x *= 1 - lr * weight_decay`` before the step, the gradient's term 0. An element applies
    both (``x = x * decay_factor``, then ``g = g + weight_decay * x``), each exact when unused.
    """
    decay = options["weight_decay"]
    if decoupled:
        return {"weight_decay": 0.0, "decay_factor": 1.0 - lr * decay}
    return {"weight_decay": decay, "decay_factor": 1.0}


def lr_option(default):
    """The learning rate: a float or a schedule ``lr(t)``."""
    return Hyperparameter("lr", default, "learning rate: a float or a schedule lr(t), t = 1, 2, ...",
                          kind="lr")


def beta_option(name, default, doc):
    """A decay rate in [0, 1)."""
    return Hyperparameter(name, default, doc, high=1.0, high_open=True)


def moment_options(lr, betas, eps=None, *, of=("the first-moment estimate",
                                              "the second-moment estimate"),
                   library=None, eps_doc=None):
    """The options an Adam relative begins with: ``lr``, ``beta1``, ``beta2`` [, ``beta3``]
    and ``eps``.

    ``betas`` are the decay rates' defaults, ``of`` says what each one averages ("decay rate of
    <of[k]>"), ``library`` ("optax") adds the defining library's name of each (optax's ``b1``,
    ``b2``, ``b3``); ``eps`` None leaves ``eps`` out, ``eps_doc`` replaces its description.
    """
    options = [lr_option(lr)]
    for k, (default, what) in enumerate(zip(betas, of, strict=True), start=1):
        note = f" ({library}'s b{k})" if library else ""
        options.append(beta_option(f"beta{k}", default, f"decay rate of {what}{note}"))
    if eps is not None:
        options.append(eps_option(eps) if eps_doc is None else eps_option(eps, eps_doc))
    return tuple(options)


def eps_option(default, doc="term added to the denominator for numerical stability"):
    """The denominator's stabilising term."""
    return Hyperparameter("eps", default, doc)


def eps_root_option(default, doc="term added to the second moment inside the square root"):
    """optax's ``eps_root``: added under the square root of the denominator (where the
    gradient of the update through it must stay finite, as for meta-gradients)."""
    return Hyperparameter("eps_root", default, doc)


WEIGHT_DECAY = Hyperparameter("weight_decay", 0.0, "L2 penalty coefficient (added to the gradient)")

#: torch's ``maximize``: the gradient is negated before anything else, so the rule ascends.
MAXIMIZE = Hyperparameter("maximize", False, "maximize the objective: the gradient is negated "
                          "first, as torch.optim's maximize=True", kind="bool")

#: torch 2.x's ``decoupled_weight_decay`` of NAdam and RAdam: ``x *= 1 - lr weight_decay`` before
#: the step (AdamW's decay) instead of the L2 term ``g += weight_decay x``.
DECOUPLED_WEIGHT_DECAY = Hyperparameter(
    "decoupled_weight_decay", False, "decay x by 1 - lr weight_decay before the step (AdamW's "
    "decoupled decay) instead of adding weight_decay x to the gradient", kind="bool")


def _unpacked_names(element):
    """The names the element's first statement unpacks its last parameter into, or None."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(element)))
    function = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
    body = [node for node in function.body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    coefficients = function.args.args[-1].arg
    first = body[0] if body else None
    if not (isinstance(first, ast.Assign) and len(first.targets) == 1
            and isinstance(first.targets[0], ast.Tuple)
            and isinstance(first.value, ast.Name) and first.value.id == coefficients
            and all(isinstance(target, ast.Name) for target in first.targets[0].elts)):
        return None
    return tuple(target.id for target in first.targets[0].elts)


@dataclass(frozen=True)
class MatrixStep:
    """How a rule updates one piece of a parameter group that has a 2-D shape, as a matrix.

    The element math cannot: the update mixes the elements of a row, a column or the whole
    matrix (Adafactor's row and column means, Muon's Newton-Schulz orthogonalisation). Written
    once against :class:`adamnb.optim.matrix.MatrixOps` (products, element loops, sums), it runs
    on NumPy arrays and on CUDA device arrays alike, one call per piece and step.

    Parameters
    ----------
    slots : tuple of str
        The piece's state arrays, with torch's state names (``row_var``, ``col_var``;
        ``momentum_buffer``).
    shapes : callable
        ``shapes(options, shape)``: the shape of each slot for a piece of 2-D ``shape``.
    step : callable
        ``step(X, G, state, values, options, ops)``: update the matrix view ``X`` in place given
        its gradient ``G`` (same shape), the piece's state (a tuple of arrays in slot order,
        updated in place), ``values``, the step's scalars by name (the rule's ``scalars``, x's
        dtype), the group's options, and ``ops``, a :class:`adamnb.optim.matrix.MatrixOps` on
        the arrays' device.
    """

    slots: tuple
    shapes: Callable
    step: Callable


class _EverySlot:
    """The default ``rows(options)`` of a rule: every one of its ``count`` slots is in use."""

    def __init__(self, count):
        self.count = count

    def __call__(self, options):
        return self.count

    def __repr__(self):
        return f"<every slot: {self.count}>"


@dataclass(frozen=True)
class UpdateRule:
    """One update rule written once: options, state layout, per-step scalars and element math.

    See the module notes for each field. ``fixed`` pins options for a method that is a
    configuration of another rule (``amsgrad`` is Adam with ``amsgrad=True``); ``check`` validates
    combinations of options; ``initial_state(options, slot)`` gives a slot's value at step 0
    (default 0); ``scalar_state`` and ``scalar_series`` carry host scalars from step to step
    (NAdam's running product of momentum factors, ASGD's previous rate):
    ``scalar_series(options, t, lr, scalars)`` returns the per-step series of each, as keyword
    arguments of ``coefficients``, and their values after the last step. ``outputs(options, x,
    state)`` gives a run's extra results from the final iterate and state (NumPy arrays; ``x``
    may carry leading batch axes, ``state`` then has shape (..., rows, n)): a dict of arrays whose
    key ``"x"``, if present, replaces the reported iterate. ``class_name`` names the optimizer
    class generated for the rule (None: no class of its own), ``summary`` is one line, ``doc`` the
    math and sources, ``source`` the paper and library the formulas follow, ``defined_by`` the
    library function the rule reproduces (default ``torch.optim.<class_name>``).

    A rule may also update a parameter group's 2-D pieces as matrices (:class:`MatrixStep`,
    :mod:`adamnb.optim.groups`): Adafactor's factored second moments, Muon's orthogonalised
    momentum. A rule that is only a matrix step (Muon: ``element`` None) names the rule that
    updates the pieces without a 2-D shape, ``vector_fallback`` (torch recommends AdamW).
    ``whole_vector`` marks a rule whose sums span every parameter (optax's Prodigy sums over the
    whole parameter tree): it runs without groups.

    A rule with reductions inside its step (module notes) sets ``reductions``, ``reduce``,
    ``finish`` and ``finished``, and, if it carries scalars that depend on the sums, ``carried``,
    ``initial_carry(options)`` (their values before step 1, a dict) and ``advance``.
    ``dtype_options(options, dtype)`` fills in options whose value depends on x's dtype (torch's
    ``eps1=None`` of Adafactor is the dtype's machine epsilon) before the scalars are computed.

    Raises
    ------
    ValueError
        At construction: the element's unpacking of ``c`` does not match ``scalars`` (followed
        by ``finished``), nor the first pass's, ``finish``'s or ``advance``'s ``scalars``; a
        reduction rule lacks one of its parts; an option takes a name reserved for the drivers
        (:data:`RESERVED_OPTION_NAMES`).
    """

    name: str
    hyperparameters: tuple
    slots: tuple
    element: Callable
    summary: str
    source: str
    rows: Callable = None
    coefficients: Callable = None
    scalars: tuple = ()
    doc: str = ""
    class_name: str = None
    check: Callable = None
    initial_state: Callable = None
    fixed: dict = field(default_factory=dict)
    scalar_state: dict = field(default_factory=dict)
    scalar_series: Callable = None
    outputs: Callable = None
    defined_by: str = None
    reductions: tuple = ()
    reduce: Callable = None
    finish: Callable = None
    finished: tuple = ()
    carried: tuple = ()
    initial_carry: Callable = None
    advance: Callable = None
    dtype_options: Callable = None
    matrix: "MatrixStep" = None
    vector_fallback: str = None
    whole_vector: bool = False

    def __post_init__(self):
        if self.rows is None or isinstance(self.rows, _EverySlot):
            # (again for a copy with other slots: dataclasses.replace passes the old default)
            object.__setattr__(self, "rows", _EverySlot(len(self.slots)))
        if not self.scalars:
            declaring = self.reduce or self.element
            names = None if declaring is None else _unpacked_names(declaring)
            if names is None:
                raise ValueError(f"rule {self.name!r}: declare the per-step scalars by unpacking "
                                 "them in the element's first statement (`a, b, ... = c`), or "
                                 "pass scalars= for a rule without an element")
            if self.reduce is None and self.finished:
                names = names[:len(names) - len(self.finished)]
            object.__setattr__(self, "scalars", tuple(names))
        if self.element is None:
            if self.matrix is None or self.vector_fallback is None:
                raise ValueError(f"rule {self.name!r}: a rule without an element needs a matrix "
                                 "step and a vector_fallback rule")
        else:
            self._check_unpacking(self.element, tuple(self.scalars) + tuple(self.finished))
        if self.reductions or self.reduce or self.finish or self.finished:
            if not (self.reductions and self.reduce and self.finish):
                raise ValueError(f"rule {self.name!r}: a rule with reductions needs reductions, "
                                 "reduce and finish")
            self._check_unpacking(self.reduce, tuple(self.scalars))
            self._check_unpacking(self.finish, tuple(self.scalars))
        if bool(self.carried) != bool(self.advance) or (self.carried and not self.reduce) \
                or bool(self.carried) != bool(self.initial_carry):
            raise ValueError(f"rule {self.name!r}: carried scalars need reductions, "
                             "initial_carry and advance")
        if self.advance is not None:
            self._check_unpacking(self.advance, tuple(self.scalars))
        names = [hp.name for hp in self.hyperparameters]
        clash = sorted(RESERVED_OPTION_NAMES.intersection(names) | set(self.fixed)
                       .intersection(RESERVED_OPTION_NAMES))
        if clash:
            raise ValueError(f"rule {self.name!r}: option name(s) {clash} belong to the drivers "
                             "(maxiter, gtol, ...); give the hyperparameter another name")
        if len(set(names)) != len(names):
            raise ValueError(f"rule {self.name!r}: an option is declared twice in {names}")

    def _check_unpacking(self, function, names):
        unpacked = _unpacked_names(function)
        if unpacked != names:
            raise ValueError(
                f"rule {self.name!r}: {function.__name__} must begin by unpacking its "
                f"coefficients into the declared scalars, `{', '.join(names)} = c`; it unpacks "
                f"{unpacked}")

    @property
    def compiled(self):
        """``(element, reduce, finish, advance)``: the functions a kernel built from the rule
        compiles in, which identify it in the process's caches of kernels (a rule copied with
        ``dataclasses.replace`` and another ``finish`` gets kernels of its own)."""
        return (self.element, self.reduce, self.finish, self.advance)

    @property
    def n_carried(self):
        """How many scalars the rule carries from step to step (the length of ``carry``)."""
        return len(self.carried)

    def carry_vector(self, options, dtype, starts=None):
        """The carried scalars before step 1, as an array of ``dtype`` of length
        :attr:`n_carried` (shape (starts, n_carried) for ``starts`` independent runs)."""
        shape = (self.n_carried,) if starts is None else (starts, self.n_carried)
        carry = np.zeros(shape, dtype=dtype)
        if self.carried:
            values = self.initial_carry(options)
            for k, name in enumerate(self.carried):
                carry[..., k] = values[name]
        return carry

    def options_for(self, options, dtype):
        """``options`` with the values that depend on x's dtype filled in (see
        ``dtype_options``); the options themselves otherwise."""
        if self.dtype_options is None:
            return options
        return self.dtype_options(dict(options), np.dtype(dtype))

    @property
    def library(self):
        """The library function whose formulas, defaults and names the rule follows."""
        if self.defined_by:
            return self.defined_by
        return f"torch.optim.{self.class_name}" if self.class_name else "torch.optim"

    @property
    def n_coefficients(self):
        """Length of the per-step scalars ``c`` the element reads."""
        return len(self.scalars)

    @property
    def defaults(self):
        """The options' defaults (torch's), with the method's fixed options."""
        values = {hp.name: hp.default for hp in self.hyperparameters}
        values.update(self.fixed)
        return values

    def validate(self, options):
        """Return the complete, validated option dict.

        Unknown names are the caller's concern (``minimize`` warns, the classes raise TypeError).

        Raises
        ------
        ValueError
            A bad value (the message names the option and its range), a combination the rule
            does not allow, or a change to an option the method fixes.
        """
        values = self.defaults
        by_name = {hp.name: hp for hp in self.hyperparameters}
        for name, value in options.items():
            if name in self.fixed and value != self.fixed[name]:
                raise ValueError(f"method {self.name!r} requires {name}={self.fixed[name]!r}")
            if name in by_name:
                values[name] = by_name[name].validate(value)
        if self.check is not None:
            self.check(values)
        return values

    def coefficient_columns(self, options, t, lr, scalars, dtype=np.float64):
        """The per-step scalars of steps ``t`` (1-D int array) at rates ``lr``.

        Returns ``(columns, scalars)``: a C-contiguous array of shape (K, len(t)), one row per name
        of :attr:`scalars`, whose column j holds the scalars of step ``t[j]``, computed in float64
        and rounded to ``dtype`` once; and the host scalars after the last of these steps (``t``
        must continue the run ``scalars`` belong to).
        """
        t = np.asarray(t, dtype=np.int64)
        lr = np.asarray(lr, dtype=np.float64)
        series = {}
        if self.scalar_series is not None:
            series, scalars = self.scalar_series(options, t, lr, scalars)
        given = {} if self.coefficients is None else self.coefficients(options, t, lr, **series)
        unread = sorted(set(given) - set(self.scalars))
        if unread:
            raise ValueError(f"rule {self.name!r}: coefficients gave {unread}, which the element "
                             f"does not read (it reads {list(self.scalars)})")
        columns = np.empty((len(self.scalars), t.size), dtype=dtype)
        for row, name in enumerate(self.scalars):
            columns[row] = given[name] if name in given else standard_scalar(
                name, options, t, lr, self.name)
        return columns, scalars

    def state_vectors(self, options, size, dtype, starts=None):
        """The state at step 0: ``rows(options)`` vectors of ``size`` (zeros unless
        ``initial_state`` says otherwise), shape (rows, size), or (starts, rows, size) for
        ``starts`` independent runs."""
        rows = self.rows(options)
        shape = (rows, size) if starts is None else (starts, rows, size)
        state = np.zeros(shape, dtype=dtype)
        if self.initial_state is not None:
            for row, slot in enumerate(self.slots[:rows]):
                state[..., row, :] = self.initial_state(options, slot)
        return state

    def stream(self, options, schedule, dtype, maxiter=None, scalars=None, step=0):
        """A :class:`CoefficientStream` of this rule's scalars from step ``step + 1``."""
        return CoefficientStream(self, options, schedule, dtype, maxiter, scalars, step)


def _pure_rates(schedule, steps):
    """``(steps, rates)``: the first of ``steps`` (consecutive) and their rates, up to the step
    before the first whose rate is bad or whose computation raises (the longest such prefix,
    found by bisection); that step's error is raised where it is the first (see
    :meth:`CoefficientStream.columns`)."""
    try:
        rates = np.asarray(schedule.values(steps), dtype=np.float64)
    except Exception:
        if steps.size == 1:
            raise
        good, failing = 0, steps.size  # the rates of steps[:good] compute, of steps[:failing] not
        while failing - good > 1:
            middle = (good + failing) // 2
            try:
                schedule.values(steps[:middle])
                good = middle
            except Exception:
                failing = middle
        steps = steps[:max(good, 1)]  # with none good, the first step raises its own error
        rates = np.asarray(schedule.values(steps), dtype=np.float64)
    bad = ~(np.isfinite(rates) & (rates >= 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        if first == 0:
            checked_rates(rates[:1], steps[:1])  # raises, naming the step
        steps, rates = steps[:first], rates[:first]
    return steps, rates


class CoefficientStream:
    """The per-step scalars of one run, step after step: the one place every driver and every
    optimizer class reads them from.

    A built-in, pure schedule (:class:`adamnb.optim.schedules.Schedule` whose rates depend on
    ``t`` only) lets the stream compute blocks of steps ahead, vectorised. Any other callable
    ``lr(t)`` is called exactly once per step, at that step, in order, and never for a step that
    does not happen: a schedule that reads state changed by a callback sees the change.

    Parameters
    ----------
    rule : UpdateRule
    options : dict
        Validated options (:meth:`UpdateRule.validate`).
    schedule : callable
        ``lr(t)`` (:func:`adamnb.optim.schedules.as_schedule` of ``options["lr"]``).
    dtype : numpy dtype
        The dtype of ``x``: each scalar is rounded to it once, as torch does.
    maxiter : int, optional
        The last step; blocks never reach past it.
    scalars : dict, optional
        The rule's host scalars after step ``step`` (default: their initial values).
    step : int, default 0
        The last step already taken.
    """

    def __init__(self, rule, options, schedule, dtype, maxiter=None, scalars=None, step=0):
        self.dtype = np.dtype(dtype)
        self.rule, self.options, self.schedule = rule, rule.options_for(options, dtype), schedule
        self.maxiter = maxiter
        self.scalars = dict(rule.scalar_state if scalars is None else scalars)
        self.next = step + 1  # the first step not computed yet
        self.pure = isinstance(schedule, Schedule) and schedule.pure

    def columns(self, t, block):
        """The scalars of steps ``t, t+1, ...``: at most ``block`` of them (one only for a
        callable schedule), never past ``maxiter``, as columns of a (K, m) array in ``dtype``.

        ``t`` must be the next step of the stream: steps are computed once each, in order.

        A pure schedule's rates are computed for the whole block at once, ahead of the steps.
        Where one of them is bad (NaN, infinite, negative) or cannot be computed (``OneCycle``
        past its ``total_steps``), the block ends before that step, and the error is raised
        when that step comes first, that is when it is about to be taken: as for a callable
        schedule, a run that stops before that step never meets it.

        Raises
        ------
        ValueError
            The rate of step ``t`` is bad (the message names the step); or what the schedule
            raised computing it.
        """
        if t != self.next:
            raise ValueError(f"the coefficient stream is at step {self.next}, not {t}")
        count = block if self.pure else 1
        last = t + count - 1 if self.maxiter is None else min(t + count - 1, self.maxiter)
        steps = np.arange(t, last + 1, dtype=np.int64)
        if self.pure:
            steps, rates = _pure_rates(self.schedule, steps)
            last = int(steps[-1])
        else:
            rates = np.array([checked_rate(self.schedule, int(step)) for step in steps])
        columns, self.scalars = self.rule.coefficient_columns(self.options, steps, rates,
                                                              self.scalars, self.dtype)
        self.next = last + 1
        return columns

    def step(self, t):
        """The scalars of the single step ``t`` as a tuple of ``dtype`` scalars (a kernel's ``c``).
        """
        scalar = self.dtype.type
        return tuple(scalar(value) for value in self.columns(t, 1)[:, 0])
