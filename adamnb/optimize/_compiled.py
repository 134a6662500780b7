"""The compiled driver: whole blocks of steps in one numba loop, for jitted objectives.

When ``fun`` and the gradient are numba functions, with no callback, a fixed ``args`` tuple, no
finite differences and a schedule that depends on the step alone, :func:`adamnb.minimize` can run
blocks of steps in a compiled loop: the iteration of :mod:`adamnb.optimize._common`, step for step
and bit for bit, with no Python between steps. It is generated, like every kernel, from the rule's
one ``element`` (through :func:`adamnb.backends.elements.fused_update`) and reads the per-step
scalars from the same :class:`adamnb.optim.CoefficientStream` as the host driver.

On a small problem a step then costs about what the update's own chain of dependent operations
costs (the next x needs the gradient at this x, which needs this x; for Adam on 2-D Rosenbrock,
the gradient, the moments, a square root and two divisions one after the other: some 30 ns), and
the loop keeps everything else off that chain:

* No allocation per step where the objective allows it. The objective is called through one of
  four gradient protocols (:func:`gradient_protocol`): the two of scipy (``fun`` returning
  ``(f, g)`` with ``jac=True``, or ``fun`` and ``jac``), which allocate a new gradient array per
  call, and their allocation-free forms, used when the jitted function carries an ``into``
  attribute: a jitted ``into(x, g_out, *args)`` that writes the same gradient into ``g_out`` (and
  returns f). The functions of :mod:`adamnb.problems.functions` carry one.
* The objective compiled into the loop (:func:`objective_handle`): its Python source is inlined
  into the loop's code, so there is no call, and numba's reference counting of a gradient the
  objective allocates can be pruned across what was the call. Inlining compiles the objective
  with the loop's options, so it is done only where that cannot change a result: the built-in
  problems, and a user's function compiled without fast-math, parallel or bounds-checking
  options, with no division or remainder in its own code (numba's error model, which decides
  what a division by zero does, is the loop's), and reading no global or closure variable that
  holds data (numba froze its value when it compiled the user's function; the copy would read
  the value bound now). Any other function is called.
* Two gradient buffers, swapped after each successful step: the new gradient is written into the
  spare one, so the last finite gradient survives a non-finite one (status 3) without a copy.
  The step's scalars are read one by one (:func:`coefficient_reader`) rather than through a view
  of the table, which would touch the table's reference count at every step. (Spelling out the
  buffers' turns instead of swapping them saves the swap's reference counts in a loop that keeps
  the runtime, but inlines the step twice: compiling took three to four times as long.)
* No reference counting where nothing is allocated: a loop around an ``into`` compiled into the
  loop (a built-in problem's, or a user's whose compiled code allocates nothing and takes no
  reference, :func:`_allocation_free`) is compiled without numba's runtime
  (:func:`compiled_loop`'s ``nrt``), so that no reference count is touched per step; with the
  runtime, the loop's array variables cost an atomic increment and decrement each, which took a
  step from 55 to 185 ns on an Intel Xeon (``docs/benchmarks.md``). An objective that allocates
  (scipy's two protocols, or an ``into`` calling a function that returns a new array) is called
  through an adapter of its own (:func:`objective_adapter`: the objective's call and the copy of
  its gradient, not inlined), compiled with the runtime *before* the loop, which then runs
  without it: the adapter frees what the objective allocates, the loop touches no reference
  count (215 against 51 to 62 ns a step for an allocating Rosenbrock on an AMD EPYC,
  ``docs/benchmarks.md``). The order matters: numba compiles a function first called from a
  loop without the runtime without the runtime too, and such a function never frees the arrays
  it gets back (a loop that leaked 140 bytes a step).
* The objective gets ``point``, a private copy of the iterate written in the same pass as the
  update: a user's function that changes its argument cannot change the run.
* One loop compiled per (objective, bounded or not, number of extra arguments): the objective and
  the bounds flag are compile-time constants, so numba types no function arguments at each call
  (some 7 microseconds each) and an unbounded run carries no projection code.

What remains of a step's cost is outside the loop: the block of per-step scalars, computed with
NumPy on the host (for Adam two powers per step, ``beta1**t`` and ``beta2**t``, which
:func:`adamnb.optim._rule.power` computes once per process and keeps), and the Python around
each call. ``benchmarks/bench_loops.py`` measures each part, and the loop alone.

Compiling once per machine
    A loop around a built-in problem is cached on disk by numba (its closure holds only
    functions that pickle by reference, plus the source stamp of the code it inlines: see
    :mod:`adamnb.backends.jit`), so a second process loads it in milliseconds. A loop around a
    user's function is compiled at most once per process (numba cannot key a disk cache on a
    function object that changes from process to process).

Choosing the loop by expected cost (``compiled=None``, the default)
    Compiling a loop costs about :data:`COMPILE_SECONDS`; the host loop costs about
    :data:`HOST_STEP_SECONDS` per step. :func:`compiled_route` takes the compiled loop when it is
    ready (compiled in this process, or on disk), and otherwise only once the host steps taken
    with that objective in this process, this run's included, would cost more than compiling
    (a rent-or-buy rule: a short run never waits for a compile that costs more than the run,
    and repeated short runs pay at most about twice the better of the two). ``compiled=True``
    requires the compiled loop, ``compiled=False`` the host loop.

Fast mode (``fast=True``)
    The loop and an inlined objective are compiled with the fast-math flags of
    :data:`adamnb.backends.jit.FAST_MATH` (fused multiply-adds, reciprocals): shorter dependency
    chains, other rounding. Results are no longer those of the host loop to the bit; the tests
    hold them to the exact path within a stated tolerance (``tests/test_fast_mode.py``).
"""

import builtins
import collections
import concurrent.futures
import contextvars
import dis
import math
import os
import sys
import types

import numba
import numpy as np

from adamnb.backends import cpu
from adamnb.backends.cpu import stationarity_norm_serial
from adamnb.backends.jit import (FAST_MATH, elementwise, generated_element, jit, ready,
                                 source_stamp)

__all__ = ["CONVERGED", "NOT_FINITE", "BLOCK_DONE", "COMPILE_SECONDS", "HOST_STEP_SECONDS",
           "gradient_protocol", "objective_handle", "evaluator", "compiled_loop",
           "compile_loop", "needs_runtime", "compiled_route", "can_compile", "is_jitted",
           "block_length", "iterate_compiled"]

#: Outcomes of a block of steps.
CONVERGED, NOT_FINITE, BLOCK_DONE = 1, 3, 4

#: Seconds compiling one whole loop takes, roughly (1-2 s on the 2-core development machine, and
#: several seconds for the first compile of a process, which also starts numba's compiler:
#: ``docs/benchmarks.md``), and seconds one step of the host loop takes with a jitted objective
#: (about 2.5 us there): the two figures :func:`compiled_route` weighs.
COMPILE_SECONDS = 2.0
HOST_STEP_SECONDS = 2.5e-6

_compiled_loops = {}
_handles = {}
# The loop to run, per (loop, dtype, extra arguments' types), once compiled or loaded.
_ready = {}
# Host-loop seconds spent so far in this process on runs that could have been compiled, per loop.
_host_seconds = collections.Counter()


# --- Gradient protocols: evaluate(fun, jac, args, x, g_out) -> f, the gradient at x in g_out ----

@elementwise
def _copy_gradient(g, g_out):
    if g.shape != g_out.shape:
        return False
    for i in range(g_out.size):
        g_out[i] = g[i]  # rounded to x's dtype, as the Python path rounds it
    return True


@elementwise
def _store_gradient(g, g_out):
    if not _copy_gradient(g, g_out):
        raise ValueError("The gradient's shape differs from x's; jac must return one derivative "
                         "per element of x")


_PROTOCOL_BODIES = {
    "value_and_grad": "    f, g = fun(x{args})\n    _store_gradient(g, g_out)\n    return f\n",
    "fun_and_jac": "    f = fun(x{args})\n    _store_gradient(jac(x{args}), g_out)\n    return f\n",
    "value_and_grad_into": "    return fun(x, g_out{args})\n",
    "fun_and_jac_into": "    f = fun(x{args})\n    jac(x, g_out{args})\n    return f\n",
    # A run's first evaluation, as the host driver makes it (the functions themselves, never an
    # ``into``, each on a copy of x), returning (f, whether the gradient had x's shape).
    "value_and_grad_first": "    f, g = fun(x.copy(){args})\n    return f, _copy_gradient(g, g_out)\n",
    "fun_and_jac_first": ("    f = fun(x.copy(){args})\n"
                          "    return f, _copy_gradient(jac(x.copy(){args}), g_out)\n"),
}


def evaluator(protocol, arity, tag=""):
    """``evaluate(fun, jac, args, x, g_out) -> f`` of ``protocol`` for ``arity`` extra arguments.

    Generated with the extra arguments spelled out (``args[0], args[1], ...``): numba cannot
    inline a call that unpacks ``*args``. Each is a module attribute, so that it pickles by
    reference in the closure of a cached loop. ``tag`` makes a distinct function for a distinct
    compilation context (numba remembers a function's failure to compile in one context, such as
    a loop compiled without its runtime, and would repeat it in another).
    """
    name = f"_evaluate_{protocol}_{arity}{tag}"
    spelled = "".join(f", args[{k}]" for k in range(arity))
    source = f"def {name}(fun, jac, args, x, g_out):\n" + \
        _PROTOCOL_BODIES[protocol].format(args=spelled)
    return generated_element(sys.modules[__name__], name, source,
                             _store_gradient=_store_gradient, _copy_gradient=_copy_gradient)


def gradient_protocol(fun, jac):
    """How the compiled loop calls a jitted objective: ``(protocol, fun, jac)``, the name of the
    protocol and the two functions it calls.

    ``jac`` is True (``fun`` returns ``(f, g)``) or a jitted ``jac(x, *args)``. Where the function
    that yields the gradient has a jitted ``into`` attribute, the loop calls that instead:
    ``fun.into(x, g_out, *args) -> f`` for ``jac=True``, else ``fun(x, *args)`` and
    ``jac.into(x, g_out, *args)`` (whose return value is ignored).
    """
    if jac is True:
        into = getattr(fun, "into", None)
        if is_jitted(into):
            return "value_and_grad_into", into, into
        return "value_and_grad", fun, fun
    into = getattr(jac, "into", None)
    if is_jitted(into):
        return "fun_and_jac_into", fun, into
    return "fun_and_jac", fun, jac


@elementwise
def evaluate_adapted(fun, jac, args, x, g_out):
    return fun(args, x, g_out)


_adapters = {}


def objective_adapter(protocol, fun, jac, arity):
    """A jitted ``adapter(args, x, g_out) -> f`` calling the objective as ``protocol`` says and
    writing its gradient into ``g_out``: a function of its own (not inlined), so that, compiled
    first with numba's runtime (:func:`compile_loop`), it frees what the objective allocates,
    while the loop around it runs without the runtime (the module notes)."""
    key = (protocol, fun, jac, arity)
    if key not in _adapters:
        evaluate = evaluator(protocol, arity, "_adapted")

        @jit(cache=False)
        def adapter(args, x, g_out):
            return evaluate(fun, jac, args, x, g_out)

        # One adapter per objective even when two threads make it at once: the loop must be
        # built around the one that adapt() compiled with the runtime.
        _adapters.setdefault(key, adapter)
    return _adapters[key]


# --- The objective inside the loop ----------------------------------------------------------------

def _builtin_name(function):
    """The public name of ``function`` in :mod:`adamnb.problems.functions`, or None."""
    from adamnb.problems import functions

    name = getattr(function, "__name__", None)
    return name if name and getattr(functions, name, None) is function else None


_DIVISIONS = {"BINARY_TRUE_DIVIDE", "BINARY_FLOOR_DIVIDE", "BINARY_MODULO",
              "INPLACE_TRUE_DIVIDE", "INPLACE_FLOOR_DIVIDE", "INPLACE_MODULO"}


def _divides(code):
    """Whether ``code`` (or code nested in it) divides or takes a remainder: where numba's error
    model decides the result of a zero divisor."""
    for instruction in dis.get_instructions(code):
        if instruction.opname in _DIVISIONS or (
                instruction.opname == "BINARY_OP" and instruction.argrepr.strip("=") in
                ("/", "//", "%")):
            return True
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_ATTR", "LOAD_METHOD") and \
                instruction.argval == "divmod":
            return True
    return any(_divides(const) for const in code.co_consts if isinstance(const, types.CodeType))


def _reads_data(function):
    """Whether ``function`` reads a global or closure variable that holds data (a number, an
    array: anything but a module or a callable). numba freezes such a value when it compiles the
    function; a copy compiled later would read the value bound then, which a notebook may have
    changed since (``TARGET = 5.0`` after the user's function was compiled with 1.0)."""
    def code_objects(code):
        yield code
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from code_objects(const)

    names = {instruction.argval for code in code_objects(function.__code__)
             for instruction in dis.get_instructions(code)
             if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    scope = {**vars(builtins), **function.__globals__}
    values = [scope.get(name, _MISSING) for name in names]
    values += [cell.cell_contents if _filled(cell) else _MISSING
               for cell in function.__closure__ or ()]
    return any(value is _MISSING or not (isinstance(value, types.ModuleType) or callable(value))
               for value in values)


_MISSING = object()


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def _inlinable(dispatcher):
    """Whether compiling ``dispatcher``'s source into a loop (the loop's options, this moment's
    globals) gives the same results as calling it (its own options, the globals it froze); see
    the module notes."""
    options = dispatcher.targetoptions
    if options.get("fastmath") or options.get("parallel") or options.get("boundscheck"):
        return False
    if _reads_data(dispatcher.py_func):
        return False
    return options.get("error_model") == "numpy" or not _divides(dispatcher.py_func.__code__)


def objective_handle(function, tag=""):
    """What the compiled loops call for the jitted ``function``: ``(handle, cacheable)``.

    ``handle`` is an inline copy of ``function``'s source (a ``register_jitable(inline="always")``
    function) where that is safe (:func:`_inlinable`, and always for the built-in problems), else
    ``function`` itself. ``cacheable`` is True for the built-in problems: their copies are
    attributes of this module, which pickle by reference, so a loop around one has the same disk
    cache key in every process. ``tag`` makes a distinct copy for a distinct compilation context
    (see :func:`evaluator`).
    """
    if (function, tag) in _handles:
        return _handles[function, tag]
    builtin = _builtin_name(function)
    if builtin is None and not _inlinable(function):
        _handles[function, tag] = (function, False)
        return _handles[function, tag]
    source = function.py_func
    name = f"_builtin_{builtin}{tag}" if builtin else f"_inline_{source.__name__}{tag}"
    copy = types.FunctionType(source.__code__, source.__globals__, name, source.__defaults__,
                              source.__closure__)
    copy.__kwdefaults__ = source.__kwdefaults__
    copy.__module__, copy.__qualname__ = __name__, name
    handle = elementwise(copy)
    if builtin:
        globals()[name] = handle
    _handles[function, tag] = (handle, builtin is not None)
    return _handles[function, tag]


def coefficient_reader(pattern):
    """``read(table, step)``: the step's scalars (column ``step`` of ``table``) as a tuple, where
    ``pattern`` holds a value for a row, that value compiled in as a constant (in the table's
    dtype; the batch's flags), where it holds None, read. Scalar reads, no view of the table: a
    view would touch the table's reference count at every step. A module attribute, named
    after the pattern, so that it pickles by reference in a cached loop's closure."""
    code = "".join("x" if value is None else str(int(value)) for value in pattern)
    name = f"_read_coefficients_{code}"
    items = [f"table[{row}, step]" if value is None else f"kind({value!r})"
             for row, value in enumerate(pattern)]
    source = (f"def {name}(table, step):\n    kind = table.dtype.type\n"
              f"    return ({', '.join(items)},)\n")
    return generated_element(sys.modules[__name__], name, source)


# --- The loop ---------------------------------------------------------------------------------------

@jit
def _record(history, vectors, step, f, x):
    history[step] = f
    for i in range(x.size):
        vectors[step, i] = x[i]


def _build_compiled_loop(fused_pass, n_coefficients, evaluate, fun, jac, bounded, stamp, cache,
                         fast, nrt):
    # The objective, its protocol and the bounds flag are closure constants (see the module
    # notes); recording is a call to a function of its own, taken only when asked for.
    options = {} if nrt else {"_nrt": False}
    read = coefficient_reader((None,) * n_coefficients)

    @jit(cache=cache, fastmath=set(FAST_MATH) if fast else False, **options)
    def compiled_loop(args, x, f, g, spare, point, norm, state, carry, table, previous, lower,
                      upper, gtol, history, vectors, counts):
        """Run up to table.shape[1] steps from (x, f, g) with convergence measure ``norm``.

        counts = [nit, nfev, njev] is updated. ``g`` holds the gradient at x on entry and on
        return; ``spare`` and ``point`` are buffers like x. A non-empty ``history`` (and
        ``vectors``) receives f (and x) after every step. Returns (outcome, f, norm); on
        NOT_FINITE, x, f and g are the last finite iterate's.
        """
        # In the closure, hence in the disk cache's key (adamnb.backends.jit): numba's key leaves
        # out the compile options, so the fast and exact loops, and those with and without
        # numba's runtime, must differ in their closures.
        stamp, fast, nrt  # noqa: B018
        record = history.size > 0
        current, other = g, spare
        outcome = BLOCK_DONE
        evaluations = 0
        for step in range(table.shape[1]):
            if gtol > 0 and norm <= gtol:
                outcome = CONVERGED
                break
            c = read(table, step)
            fused_pass(x, current, state, carry, c, previous, point, lower, upper, bounded)
            f_new = evaluate(fun, jac, args, point, other)
            evaluations += 1
            norm_new = stationarity_norm_serial(x, other, lower, upper)
            if not (math.isfinite(f_new) and math.isfinite(norm_new)):
                for i in range(x.size):  # a loop, not x[:] = ...: no temporary copy to allocate
                    x[i] = previous[i]
                outcome = NOT_FINITE
                break
            f, norm = float(f_new), norm_new
            current, other = other, current
            if record:
                _record(history, vectors, step, f, x)
        swaps = evaluations - 1 if outcome == NOT_FINITE else evaluations
        if swaps % 2 == 1:
            for i in range(g.size):
                g[i] = current[i]
        counts[0] += swaps  # the accepted steps; a rejected one was evaluated all the same
        counts[1] += evaluations
        counts[2] += evaluations
        return outcome, f, norm

    return compiled_loop


#: What numba's code calls to allocate, or to take a reference: an objective whose compiled code
#: (with the functions it calls) names none of these can run in a loop without the runtime.
_RUNTIME_CALLS = ("NRT_MemInfo_alloc", "NRT_Allocate", "NRT_incref")


_allocation_free_answers = {}


def _allocation_free(protocol, fun, jac, arguments):
    """Whether the user's ``into`` objective, compiled for ``arguments``' types, neither
    allocates nor takes a reference, in its own code or in the jitted functions it calls (read
    from its LLVM code, which holds theirs). False where that cannot be read (compiled code
    loaded from numba's disk cache) or the objective does not compile for those types. Answered
    once per objective and types (the batch asks at every block of steps)."""
    args, x = tuple(arguments[0]), arguments[1]
    key = (protocol, fun, jac, numba.typeof(args), numba.typeof(x))
    if key not in _allocation_free_answers:
        _allocation_free_answers[key] = _reads_allocation_free(protocol, fun, jac, args, x)
    return _allocation_free_answers[key]


def _reads_allocation_free(protocol, fun, jac, args, x):
    calls = [(fun, (x, x, *args))] if protocol == "value_and_grad_into" else \
        [(fun, (x, *args)), (jac, (x, x, *args))]
    try:
        for function, values in calls:
            signature = tuple(function.typeof_pyval(value) for value in values)
            function.compile(signature)
            if function._cache_hits.get(signature):
                return False
            code = function.inspect_llvm(signature)
            if any(name in code for name in _RUNTIME_CALLS):
                return False
    except numba.core.errors.NumbaError:
        return False
    return True


def _needs_runtime(protocol, fun, jac, inline, arguments=None):
    """Whether a loop must be compiled with numba's reference-counting runtime: everywhere but
    around an allocation-free ``into`` compiled into the loop: a built-in problem's, or a user's
    that :func:`_allocation_free` clears for ``arguments`` (without them, a user's function keeps
    the runtime). A function that calls another jitted function returning a new array would,
    in a loop without the runtime, never free it: numba does not refuse such a call there."""
    if not inline or protocol not in ("value_and_grad_into", "fun_and_jac_into"):
        return True
    if _builtin_name(fun) is not None and _builtin_name(jac) is not None:
        return False
    return arguments is None or not _allocation_free(protocol, fun, jac, arguments)


def needs_runtime(fun, jac, args, x):
    """Whether a loop around the jitted objective ``fun`` with ``jac`` (called as
    :func:`gradient_protocol` says, compiled into the loop) must keep numba's reference-counting
    runtime, for extra arguments ``args`` and one start's ``x`` (:func:`_needs_runtime`)."""
    return _needs_runtime(*gradient_protocol(fun, jac), True, (tuple(args), x))


def compiled_loop(rule, fun, jac, bounded, arity=0, fast=False, inline=True, nrt=None,
                  adapted=False):
    """The whole-loop driver of ``rule`` for the jitted objective ``fun`` with ``jac`` (True or a
    jitted gradient), called as :func:`gradient_protocol` says; see the module docstring.

    ``compiled_loop(args, x, f, g, spare, point, norm, state, carry, table, previous, lower, upper,
    gtol, history, vectors, counts) -> (outcome, f, norm)`` (``carry``: the rule's carried
    scalars, :func:`adamnb.backends.cpu.fused_pass_of`); ``bounded`` says whether ``lower`` and
    ``upper`` are given and ``arity`` is ``len(args)`` (a loop is compiled for each); ``fast``
    compiles it in fast mode; ``inline=False`` calls the objective even where it could be
    inlined (the fallback when inlining fails to compile). ``nrt``: compile with numba's
    reference-counting runtime; by default only where the protocol or a call needs it
    (:func:`_needs_runtime`): without it no reference count is touched per step (module notes).
    ``adapted``: call the objective through :func:`objective_adapter`, in a loop without the
    runtime (the adapter must be compiled first, see :func:`compile_loop`).
    """
    protocol, fun, jac = gradient_protocol(fun, jac)
    if adapted:
        inline, nrt = False, False
    nrt = _needs_runtime(protocol, fun, jac, inline) if nrt is None else bool(nrt)
    key = (*rule.compiled, protocol, fun, jac, bool(bounded), arity, bool(fast),
           bool(inline), nrt, bool(adapted))
    if adapted and key not in _compiled_loops:
        adapter = objective_adapter(protocol, fun, jac, arity)
        _compiled_loops[key] = _build_compiled_loop(
            cpu.fused_pass_of(rule), rule.n_coefficients, evaluate_adapted, adapter, adapter,
            bool(bounded), "adapted", False, bool(fast), False)
    if key not in _compiled_loops:
        tag = "" if nrt else "_without_runtime"
        fun_handle, fun_cacheable = objective_handle(fun, tag) if inline else (fun, False)
        jac_handle, jac_cacheable = objective_handle(jac, tag) if inline else (jac, False)
        stamp = cpu.rule_stamp(rule) + "-" + source_stamp(fun, jac)
        _compiled_loops[key] = _build_compiled_loop(
            cpu.fused_pass_of(rule), rule.n_coefficients, evaluator(protocol, arity, tag),
            fun_handle, jac_handle, bool(bounded), stamp, fun_cacheable and jac_cacheable,
            bool(fast), nrt)
    return _compiled_loops[key]


def compile_loop(rule, fun, jac, bounded, arity, fast, arguments):
    """The first loop of :func:`compiled_loop`'s for this objective that compiles for
    ``arguments`` (or loads from the disk cache): without numba's runtime where
    :func:`_needs_runtime` allows, then with it, then calling the objective instead of inlining
    it (one whose inlined code does not compile)."""
    candidates = [compiled_loop(rule, fun, jac, bounded, arity, fast, nrt=True),
                  compiled_loop(rule, fun, jac, bounded, arity, fast, inline=False)]
    if not needs_runtime(fun, jac, arguments[0], arguments[1]):
        candidates.insert(0, compiled_loop(rule, fun, jac, bounded, arity, fast, nrt=False))
    elif adapt(fun, jac, arguments[0], arguments[1]):
        candidates.insert(0, compiled_loop(rule, fun, jac, bounded, arity, fast, adapted=True))
    failure = None
    for candidate in dict.fromkeys(candidates):  # in order, each once
        try:
            candidate.compile(tuple(candidate.typeof_pyval(argument) for argument in arguments))
            return candidate
        except numba.core.errors.NumbaError as error:
            failure = error
    raise failure


def adapt(fun, jac, args, x):
    """Compile :func:`objective_adapter` of this objective for the extra arguments ``args`` and
    points like ``x`` (an array, or its numba type) with numba's runtime, before any loop
    without the runtime calls it: a function first compiled inside such a loop is compiled
    without the runtime too, and what it allocates is never freed. True if it compiled."""
    protocol, fun, jac = gradient_protocol(fun, jac)
    adapter = objective_adapter(protocol, fun, jac, len(args))
    point = x if isinstance(x, numba.types.Type) else adapter.typeof_pyval(x)
    try:
        adapter.compile((adapter.typeof_pyval(tuple(args)), point, point))
    except numba.core.errors.NumbaError:
        return False
    return True


def is_jitted(function):
    """True for numba CPU dispatchers (``@njit`` functions), which the compiled loop can call."""
    return isinstance(function, numba.core.registry.CPUDispatcher)


def block_length(t, record):
    """Steps per block of the compiled loop from step ``t``.

    Each block costs some 15 microseconds of Python around it (the call into the loop), so
    blocks are long: 4096 steps doubling with the steps done up to 32768, so that a run that
    converges early computes few scalars past its last step, and the first block, whose scalars
    the loop waits for, is short: the next block's are computed while the loop runs
    (:class:`_BlockScalars`). With ``record`` (return_all) the block's iterates are stored too:
    4096 steps at a time.
    """
    if record:
        return 4096
    return min(1 << 15, max(4096, t - 1))


def _why_not_compilable(run, fun, jac, notify, objective):
    """Why the run cannot take the compiled loop (a sentence), or None if it can."""
    if notify is not None:
        return "a callback is called from Python after every step"
    if run.stochastic:
        return "args is an iterator, drawn from Python at every step"
    if objective.fd_scheme is not None:
        return "the gradient is estimated by finite differences in Python"
    if run.groups is not None:
        return "parameter groups run in the host loop (one kernel call per group view)"
    if not getattr(run.schedule, "pure", False):
        return "the learning rate is a Python callable, called at every step"
    if not (is_jitted(fun) and (jac is True or is_jitted(jac))):
        return "fun and jac must be numba-jitted functions (@numba.njit)"
    return None


def can_compile(run, fun, jac, notify, objective):
    """Whether the run can take the compiled loop: jitted ``fun`` and gradient (no finite
    differences), no callback, fixed ``args``, a schedule of the step alone and no groups."""
    return _why_not_compilable(run, fun, jac, notify, objective) is None


def _arguments(run, x, f, g, norm, state, carry, lower, upper):
    """The compiled loop's arguments for a first block, with a one-step table: what
    :func:`adamnb.backends.jit.ready` types."""
    table = np.zeros((run.rule.n_coefficients, 1), dtype=x.dtype)
    return (tuple(run.args), x, f, g, g, g, norm, state, carry, table, x, lower, upper, run.gtol,
            np.empty(0), np.empty((0, x.size), dtype=x.dtype), np.zeros(3, dtype=np.int64))


def compiled_route(run, fun, jac, notify, objective, x, f, g, norm, state, carry, lower, upper):
    """The compiled loop for this run, or None where the host loop runs (module notes).

    ``fast=True`` exists in the compiled loop only, so it takes that loop at once, as
    ``compiled=True`` does: were it left to the expected cost, the same call would give the host
    loop's exact bits on its first runs and the fast loop's afterwards.

    Raises
    ------
    ValueError
        ``compiled=True`` or ``fast=True`` for a run that cannot be compiled (the message says
        why), or ``fast=True`` with ``compiled=False``.
    """
    if run.fast and run.compiled is False:
        raise ValueError("fast=True runs in the compiled loop only, and compiled=False asks for "
                         "the host loop: drop one of them")
    if run.compiled is False:
        return None
    why = _why_not_compilable(run, fun, jac, notify, objective)
    if why is not None:
        if run.compiled or run.fast:
            option = "compiled=True" if run.compiled else "fast=True (compiled loop only)"
            raise ValueError(f"{option}, but this run cannot take the compiled loop: {why}")
        return None
    loop = compiled_loop(run.rule, fun, jac, lower.size > 0, len(run.args), run.fast)
    # The loop's argument types follow from x's dtype and the extra arguments' types alone.
    key = (loop, x.dtype.char, numba.typeof(tuple(run.args)) if run.args else ())
    if key in _ready:
        return _ready[key]
    arguments = _arguments(run, x, f, g, norm, state, carry, lower, upper)
    if not (run.compiled or run.fast or ready(loop, arguments)):
        spent = _host_seconds[key] + run.maxiter * HOST_STEP_SECONDS
        if spent < COMPILE_SECONDS:
            _host_seconds[key] = spent
            return None
    _ready[key] = compile_loop(run.rule, fun, jac, lower.size > 0, len(run.args), run.fast,
                               arguments)
    return _ready[key]


_prefetcher = None


class _BlockScalars:
    """The per-step scalars of the compiled loop's blocks, the next block's computed on another
    thread while the loop runs the current one.

    A block's scalars are NumPy work (for Adam's bias corrections, two powers per step, read from
    those :func:`adamnb.optim._rule.power` keeps, a square root and a division: some 5 ns a
    step, a sixth of a compiled step of the smallest problems); the loop releases the GIL
    (the package's jit options), so the two overlap. Computed in the same order and by the same
    code as without the thread: the same bits. A block computed ahead for a run that then stops
    is simply not used (the stream is this run's own).
    """

    def __init__(self, stream, maxiter, record):
        self.stream, self.maxiter, self.record = stream, maxiter, record
        self.ahead = None  # (first step, future) of the block being computed ahead

    def _columns(self, t):
        return self.stream.columns(t, block_length(t, self.record))

    def take(self, t):
        """The block of scalars from step ``t``."""
        if self.ahead is not None:
            first, future = self.ahead
            self.ahead = None
            table = future.result()  # (never two threads on the stream at once)
            if first == t:
                return table
        return self._columns(t)

    def prefetch(self, t):
        """Start computing the block from step ``t`` (the one after the block just taken)."""
        global _prefetcher
        if t > self.maxiter:
            return
        try:
            # One thread per process: a process forked from this one (a sweep's worker)
            # inherits the executor but not its thread, and would wait for it forever.
            if _prefetcher is None or _prefetcher[0] != os.getpid():
                _prefetcher = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="adamnb-scalars"))
            # In the caller's context: NumPy's error settings (np.errstate) live in a context
            # variable, which a thread of its own would not see.
            self.ahead = (t, _prefetcher[1].submit(contextvars.copy_context().run,
                                                   self._columns, t))
        except RuntimeError:
            # The interpreter is shutting down (a run from an atexit handler, or from a thread
            # that outlives the main one): the next block is computed when it is taken.
            self.ahead = None


def iterate_compiled(run, loop, x, f, g, spare, norm, state, carry, lower, upper, counts,
                     allvecs, fun_history):
    """The iteration of :func:`adamnb.optimize._common.iterate` in compiled blocks of ``loop``
    (:func:`compiled_route`).

    ``counts`` is ``[nit, nfev, njev]`` (an int64 array) and is updated. Returns
    ``(status, nit, f, g)``.
    """
    previous, point = np.empty_like(x), np.empty_like(x)
    args = tuple(run.args)
    record = allvecs is not None
    tables = _BlockScalars(run.stream(x.dtype), run.maxiter, record)
    while True:
        t = int(counts[0]) + 1
        if run.gtol > 0 and norm <= run.gtol:
            return 0, t - 1, f, g
        if t > run.maxiter:
            return 1, t - 1, f, g
        table = tables.take(t)
        tables.prefetch(t + table.shape[1])
        steps = table.shape[1] if record else 0
        history = np.empty(steps)
        vectors = np.empty((steps, x.size), dtype=x.dtype)
        outcome, f, norm = loop(args, x, f, g, spare, point, norm, state, carry, table, previous,
                                lower, upper, run.gtol, history, vectors, counts)
        if record:
            done = int(counts[0]) - (t - 1)
            allvecs.extend(vectors[:done].copy())
            fun_history.extend(history[:done].tolist())
        if outcome == CONVERGED:
            return 0, int(counts[0]), f, g
        if outcome == NOT_FINITE:
            return 3, int(counts[0]), f, g
