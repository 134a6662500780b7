"""``minimize_batch``: many independent starts of one problem, one vectorised pass per step.

Each start's run is the iteration of :mod:`adamnb.optimize._common`, step for step and bit for
bit what ``adamnb.minimize`` gives that start alone; the batch only changes the order in which the
machine does the work.

Layout: starts innermost, structure of arrays
    The starts are cut into tiles of ``W`` starts (a power of two, sized so that a tile's data
    fit in the level-1 cache: 128 starts of a 2-D float64 problem), and the tiles are shared out
    among Python threads running the compiled loop without the GIL (numba's thread count). A
    tile's data live in one buffer, one row of ``W`` values per quantity (each coordinate of x, of
    the gradient, of the candidate point, of its gradient and of the objective's private copy of
    the point, each state vector's coordinates, the convergence measure, the status, the step
    count, and a copy of one coordinate's state taken before its update): the ``W`` values of
    one coordinate of one quantity are contiguous. Each step is then one loop over the tile's
    starts whose body is the whole step of one start (the convergence test, the rule's element
    for each coordinate, the objective at the candidate point, the convergence measure, the
    finiteness test, and the acceptance or not of the step), written without branches (a start
    that has stopped computes and discards, its state too where the rule's outputs read it), so
    that LLVM vectorises it: each machine instruction advances 4 starts (AVX2, float64) or 8
    (float32), twice that with AVX-512 where LLVM chooses it. The tile runs a whole block of steps
    before it is written back.

    Every array the step touches is seen by LLVM as the tile's buffer plus a constant offset:
    the state rows through :func:`adamnb.backends.cpu.block_view`, each start's coordinates
    through :func:`adamnb.backends.cpu.strided_view`. A view made by ``reshape`` (a call at run
    time) hides that relation: LLVM then vectorises only behind a run-time test that the view
    and the buffer do not overlap, which fails (the state rows are part of the buffer), and every
    step ran one start at a time, three times slower (``docs/benchmarks.md``).

    The objective, written for one start's ``x``, is called on a strided view of its copy of the
    candidate point's column (:func:`adamnb.backends.cpu.strided_view`) and compiled into the loop
    (:func:`adamnb.optimize._compiled.objective_handle`): for the built-in problems, and for a
    user's function that can be inlined and does not allocate, the loop body is straight-line
    code and vectorises; its dimension ``n`` is a compile-time constant, so the objective's loops
    over coordinates unroll. The loop is compiled without numba's reference-counting runtime, so
    no reference count is touched per step. A function that allocates (a gradient returned as a
    new array), or one that is called rather than inlined, or whose code LLVM cannot vectorise
    (a call to ``sin``, say), runs in the same layout start after start: the same bits, without
    the vectorisation.

Per-step scalars
    One coefficient table serves every start (the hyperparameters and schedule are shared). A
    scalar that the element tests in a branch (a flag such as ``amsgrad``, ``nesterov``,
    ``centered``), when the block's table holds it constant at 0 or 1, is compiled in as that
    constant: the branch folds away, as vectorisation needs. The scalars' values, hence the bits,
    are the table's either way.

Rules that sum over the vector inside a step
    LAMB, Prodigy and Adafactor need one start's whole vector before any element's update (their
    sums, :mod:`adamnb.backends.cpu`), which a lane of a tile does not have: their starts run one
    after the other through the single-start compiled loop
    (:func:`adamnb.optimize._compiled.compiled_loop`), each the bits of ``adamnb.minimize``.

Compiling once per machine
    For the built-in problems every function involved pickles by reference, so the batched loop
    is cached on disk by numba, as the single-start loop is.
"""

import ast
import concurrent.futures
import hashlib
import inspect
import textwrap
import warnings

import numba
import numpy as np
from numba.core.errors import NumbaIRAssumptionWarning

from adamnb.backends import cpu
from adamnb.backends.cpu import block_view, strided_view
from adamnb.backends.elements import fold_max, project, stationarity
from adamnb.backends.jit import jit, source_stamp
from adamnb.optim import rules
from adamnb.optimize import _compiled
from adamnb.optimize._common import as_bounds, as_options, build_result, prepare
from adamnb.optimize._compiled import (CONVERGED, NOT_FINITE, block_length, compile_loop,
                                       coefficient_reader, evaluator, gradient_protocol, is_jitted,
                                       needs_runtime, objective_handle)

__all__ = ["minimize_batch"]

_RUNNING = -1
#: Bytes of one tile's buffer the tile width aims at (level-1 data cache: 32-48 KiB).
_TILE_BYTES = 24 * 1024
_loops = {}
_first_evaluations = {}
_branches = {}
_executor = None


def _tile_rows(n, rows):
    """Rows of a tile's buffer: x, the gradient, the candidate x, its gradient and the objective's
    copy of it (n rows each), the convergence measure, the status, the step count, the
    ``rows`` state vectors (n rows each), and ``rows`` rows that keep one coordinate's state
    across its update (a stopped start's state must not move)."""
    return 5 * n + 3 + rows * n + rows


def _tile_width(rows, itemsize):
    """Starts per tile: the largest power of two from 8 to 256 whose buffer fits the budget."""
    width = 256
    while width > 8 and rows * width * itemsize > _TILE_BYTES:
        width //= 2
    return width


def _tested_names(function, flags_only=False):
    """The names ``function`` tests in a branch, and those it passes to a per-element helper
    that tests them as a flag (``torch_gradient(x, g, maximize, weight_decay)`` tests
    ``maximize != 0``); with ``flags_only``, only names compared with 0."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    tests = [branch.test for branch in ast.walk(tree)
             if isinstance(branch, (ast.If, ast.IfExp, ast.While))]
    if flags_only:
        tests = [test for test in tests if isinstance(test, ast.Compare)
                 and any(isinstance(c, ast.Constant) and c.value == 0 for c in test.comparators)]
    tested = {node.id for test in tests for node in ast.walk(test) if isinstance(node, ast.Name)}
    for call in ast.walk(tree):
        callee = (function.__globals__.get(call.func.id)
                  if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else None)
        callee = getattr(callee, "py_func", callee)
        if not inspect.isfunction(callee) or callee is function:
            continue
        inner = _tested_names(callee, flags_only=True)
        tested.update(argument.id for parameter, argument
                      in zip(inspect.signature(callee).parameters, call.args)
                      if parameter in inner and isinstance(argument, ast.Name))
    return tested


def _branch_rows(rule):
    """The rows of ``rule``'s coefficient table that its element tests in a branch (``if
    amsgrad != 0``, ``if momentum > 0``, also inside a helper it calls): the scalars worth
    compiling in as constants."""
    if rule.element not in _branches:
        tested = _tested_names(rule.element)
        _branches[rule.element] = tuple(row for row, name in enumerate(rule.scalars)
                                        if name in tested)
    return _branches[rule.element]


def _pattern(table, branch_rows):
    """The rows among ``branch_rows`` that hold one value, 0 or 1, across the block: a tuple with
    that value for those rows and None for the others."""
    pattern = [None] * table.shape[0]
    for row in branch_rows:
        first = table[row, 0] if table.shape[1] else None
        if first is not None and first in (0, 1) and bool(np.all(table[row] == first)):
            pattern[row] = float(first)
    return tuple(pattern)


def _merge(pattern, new):
    """The rows constant with the same value in both patterns."""
    return tuple(a if a is not None and a == b else None for a, b in zip(pattern, new))


def _build_tile_steps(name, element, read, evaluate, fun, jac, n, width, rows, bounded, fast,
                      nrt, freeze):
    """The steps of one tile (module notes), a function of its own compiled without numba's
    runtime where ``nrt`` is False; published as a module attribute ``name`` so that it pickles
    by reference. ``freeze``: a stopped start's state is kept (undone after the element's
    in-place update), for a rule whose outputs read the state; for any other rule a stopped
    start's state is never read again, and the copies would only slow every step."""
    X, G, XN, GN, POINT = (block * n * width for block in range(5))
    NORM, STATUS, COUNT, STATE = ((5 * n + row) * width for row in range(4))
    KEPT = (5 * n + 3 + rows * n) * width

    def tile_steps(T, F, table, lower, upper, gtol, args):
        state = block_view(T, STATE, rows, n * width)
        for step in range(table.shape[1]):
            c = read(table, step)
            running_any = False
            for j in range(width):
                status = T[STATUS + j]
                norm = T[NORM + j]
                running = status == _RUNNING
                converged = running & (gtol > 0) & (norm <= gtol)
                run = running & (not converged)
                running_any |= run
                for i in range(n):
                    e = i * width + j
                    # The element updates the state in place; a start that has stopped keeps
                    # its own where its outputs (ASGD's average, schedule-free's z) read it.
                    if freeze:
                        for r in range(rows):
                            T[KEPT + r * width + j] = state[r, e]
                    old = T[X + e]
                    new = element(old, T[G + e], state, e, c)
                    if freeze:
                        for r in range(rows):
                            kept, updated = T[KEPT + r * width + j], state[r, e]
                            state[r, e] = updated if run else kept
                    if bounded:
                        new = project(new, lower[i], upper[i])
                    new = new if run else old
                    T[XN + e] = new
                    T[POINT + e] = new  # the objective's own copy: it may write into it
                f_new = evaluate(fun, jac, args, strided_view(T, POINT + j, n, width),
                                 strided_view(T, GN + j, n, width))
                if bounded:
                    norm_new = stationarity(T[XN + j], T[GN + j], lower[0], upper[0], True)
                else:
                    norm_new = stationarity(T[GN + j], T[GN + j], T[GN + j], T[GN + j], False)
                for i in range(1, n):
                    e = i * width + j
                    if bounded:
                        term = stationarity(T[XN + e], T[GN + e], lower[i], upper[i], True)
                    else:
                        term = stationarity(T[GN + e], T[GN + e], T[GN + e], T[GN + e], False)
                    norm_new = fold_max(norm_new, term)
                finite = (f_new - f_new == 0) & (norm_new - norm_new == 0)
                accept = run & finite
                for i in range(n):
                    e = i * width + j
                    x_old, x_new = T[X + e], T[XN + e]
                    T[X + e] = x_new if accept else x_old
                    g_old, g_new = T[G + e], T[GN + e]
                    T[G + e] = g_new if accept else g_old
                f_old = F[j]
                F[j] = f_new if accept else f_old
                T[NORM + j] = norm_new if accept else norm
                stopped = 0.0 if converged else status
                T[STATUS + j] = 3.0 if (run & (not finite)) else stopped
                T[COUNT + j] += 1.0 if run else 0.0
            if not running_any:
                break

    tile_steps.__name__ = tile_steps.__qualname__ = name
    tile_steps.__module__ = __name__
    options = {"error_model": "numpy", "fastmath": set(_compiled.FAST_MATH) if fast else False}
    if not nrt:
        options["_nrt"] = False
    globals()[name] = numba.extending.register_jitable(**options)(tile_steps)
    return globals()[name]


def _build_batched_loop(tile_steps, n, width, rows, stamp, cache):
    X0, G0, NORM, STATUS, COUNT, STATE = 0, n, 5 * n, 5 * n + 1, 5 * n + 2, 5 * n + 3
    size = _tile_rows(n, rows) * width

    @jit(cache=cache)
    def batched_loop(args, X, F, G, norms, states, table, lower, upper, gtol, status, counts,
                     first, last):
        stamp  # noqa: B018 -- in the closure: part of the disk cache's key (adamnb.backends.jit)
        k = X.shape[0]
        for b in range(first, last):
            lo = b * width
            m = min(width, k - lo)
            T = np.empty(size, dtype=X.dtype)
            Fb = np.empty(width)
            for j in range(width):
                s = lo + j if j < m else lo  # a full tile: the spare lanes repeat the first start
                for i in range(n):
                    T[(X0 + i) * width + j] = X[s, i]
                    T[(G0 + i) * width + j] = G[s, i]
                    for r in range(rows):
                        T[(STATE + r * n + i) * width + j] = states[s, r, i]
                Fb[j] = F[s]
                T[NORM * width + j] = norms[s]
                T[STATUS * width + j] = status[s] if j < m else 0
                T[COUNT * width + j] = 0
            tile_steps(T, Fb, table, lower, upper, gtol, args)
            for j in range(m):
                s = lo + j
                for i in range(n):
                    X[s, i] = T[(X0 + i) * width + j]
                    G[s, i] = T[(G0 + i) * width + j]
                    for r in range(rows):
                        states[s, r, i] = T[(STATE + r * n + i) * width + j]
                F[s] = Fb[j]
                norms[s] = T[NORM * width + j]
                rejected = 1 if status[s] == _RUNNING and T[STATUS * width + j] == 3 else 0
                status[s] = int(T[STATUS * width + j])
                steps = int(T[COUNT * width + j])
                counts[s, 0] += steps - rejected  # nit counts the accepted steps
                counts[s, 1] += steps
                counts[s, 2] += steps

    return batched_loop


def _batched_loop(rule, fun, jac, bounded, arity, n, rows, dtype, fast, pattern, nrt, inline):
    """The batched loop for this configuration, built once per process (cached on disk for the
    built-in problems): ``loop(args, X, F, G, norms, states, table, lower, upper, gtol, status,
    counts)``."""
    protocol, fun, jac = gradient_protocol(fun, jac)
    key = (rule.element, rule.outputs is not None, protocol, fun, jac, bool(bounded), arity, n,
           rows, np.dtype(dtype), bool(fast), pattern, nrt, inline)
    if key not in _loops:
        tag = "" if nrt else "_without_runtime"
        fun_handle, fun_cacheable = objective_handle(fun, tag) if inline else (fun, False)
        jac_handle, jac_cacheable = objective_handle(jac, tag) if inline else (jac, False)
        width = _tile_width(_tile_rows(n, rows), np.dtype(dtype).itemsize)
        stamp = source_stamp(rule.element, cpu.elements, cpu, _compiled, fun, jac)
        freeze = rule.outputs is not None
        described = repr((rule.element.__module__, rule.element.__qualname__, protocol,
                          fun_handle.__qualname__, jac_handle.__qualname__, bool(bounded),
                          arity, n, width, rows, bool(fast), pattern, nrt, freeze, stamp))
        name = "_tile_steps_" + hashlib.sha256(described.encode()).hexdigest()[:20]
        tile_steps = globals().get(name) or _build_tile_steps(
            name, rule.element, coefficient_reader(pattern), evaluator(protocol, arity, tag),
            fun_handle, jac_handle, n, width, rows, bool(bounded), bool(fast), nrt, freeze)
        cacheable = fun_cacheable and jac_cacheable and inline
        _loops[key] = _build_batched_loop(tile_steps, n, width, rows, stamp, cacheable)
        _loops[key].tile_width = width
    return _loops[key]


def _compiled_batched_loop(rule, fun, jac, bounded, arity, n, rows, fast, pattern, arguments):
    """The fastest batched loop that compiles for ``arguments``: without numba's runtime and
    with the objective inlined, where :func:`adamnb.optimize._compiled.needs_runtime` allows;
    else with the runtime; else calling the objective. (Trying a loop without the runtime around
    an objective that calls a helper returning a new array failed, and numba kept that helper's
    failure for the retry with the runtime: the batch refused such an objective.)"""
    dtype = arguments[1].dtype
    attempts = ((False, True), (True, True), (True, False))
    if needs_runtime(fun, jac, arguments[0], arguments[1][0]):
        attempts = attempts[1:]
    for nrt, inline in attempts:
        loop = _batched_loop(rule, fun, jac, bounded, arity, n, rows, dtype, fast, pattern, nrt,
                             inline)
        try:
            with warnings.catch_warnings():
                # numba's internal check misreads the inlined projection's reassigned argument
                # ("variable ... is not in scope"); the compiled code is right (the tests check
                # every rule with bounds against single-start runs, bit for bit).
                warnings.simplefilter("ignore", NumbaIRAssumptionWarning)
                loop.compile(tuple(loop.typeof_pyval(argument) for argument in arguments))
            return loop
        except numba.core.errors.NumbaError:
            if (nrt, inline) == (True, False):
                raise
    raise AssertionError("unreachable")


def _run_tiles(loop, arguments, tiles):
    """Run ``loop`` over ``tiles`` tiles, shared out in chunks among numba's thread count of
    Python threads (the loop releases the GIL). Tiles are independent: the split does not change
    a bit."""
    threads = min(numba.get_num_threads(), tiles)
    if threads <= 1:
        loop(*arguments, 0, tiles)
        return
    global _executor
    if _executor is None or _executor._max_workers < threads:
        _executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                          thread_name_prefix="adamnb-batch")
    edges = np.linspace(0, tiles, min(tiles, 4 * threads) + 1).astype(int)
    futures = [_executor.submit(loop, *arguments, int(first), int(last))
               for first, last in zip(edges[:-1], edges[1:]) if last > first]
    for future in futures:
        future.result()


def _run_starts(loop, run, X, F, G, norms, states, carries, table, lower, upper, status, counts):
    """A block of steps for each running start, one start after the other, with the single-start
    compiled ``loop`` (the path of the rules that sum over the vector, module notes)."""
    args, history = tuple(run.args), np.empty(0)
    for j in np.flatnonzero(status == _RUNNING):
        outcome, F[j], norms[j] = loop(args, X[j], F[j], G[j], np.empty_like(X[j]),
                                       np.empty_like(X[j]), norms[j], states[j], carries[j],
                                       table, np.empty_like(X[j]), lower, upper, run.gtol,
                                       history, X[j:j], counts[j])
        if outcome == CONVERGED:
            status[j] = 0
        elif outcome == NOT_FINITE:
            status[j] = 3


def _first_evaluation(fun, jac, arity):
    """``evaluate_all(args, X, F, G, norms, lower, upper, shape_ok)``: every start's first
    evaluation, as the host driver makes it (``fun`` itself, not an ``into``), in parallel."""
    combined = jac is True
    key = (fun, jac, arity)
    if key not in _first_evaluations:
        fun_handle, fun_cacheable = objective_handle(fun)
        jac_handle, jac_cacheable = (fun_handle, True) if combined else objective_handle(jac)
        evaluate = evaluator("value_and_grad_first" if combined else "fun_and_jac_first", arity)
        stamp = source_stamp(_compiled, cpu.elements, fun, fun if combined else jac)

        @jit(cache=fun_cacheable and jac_cacheable)
        def evaluate_all(args, X, F, G, norms, lower, upper, shape_ok):
            stamp  # noqa: B018 -- in the closure: part of the disk cache's key
            for j in range(X.shape[0]):
                f, ok = evaluate(fun_handle, jac_handle, args, X[j], G[j])
                shape_ok[j] = ok
                if ok:
                    F[j] = f
                    norms[j] = cpu.stationarity_norm_serial(X[j], G[j], lower, upper)

        _first_evaluations[key] = evaluate_all
    return _first_evaluations[key]


#: The driver options minimize_batch uses (return_all and groups are refused with their reasons).
_BATCH_OPTIONS = ("maxiter", "gtol", "tol", "disp", "fast", "return_all", "groups")


def _check_batch_options(rule, options):
    """Refuse options minimize_batch would not use: unlike minimize (scipy's methods warn and go
    on), the batch is not a scipy method, and an option it ignores (``compiled``, a misspelt
    hyperparameter) would silently change nothing."""
    accepted = {hp.name for hp in rule.hyperparameters} | set(rule.fixed) | set(_BATCH_OPTIONS)
    for name in options:
        if name not in accepted:
            raise ValueError(f"Unknown option for minimize_batch: {name!r} (method "
                             f"{rule.name!r} accepts {', '.join(sorted(accepted))})")


def _best(fun, status):
    """The index of the lowest finite ``fun`` among the starts without status 3; if every start
    met NaN or inf, among all (their last finite iterates); None if no start has a finite
    value (every first evaluation failed). Never -1, which would index the last start."""
    finite = np.isfinite(fun)
    for usable in (finite & (status != 3), finite):
        if usable.any():
            candidates = np.flatnonzero(usable)
            return int(candidates[np.argmin(fun[candidates])])
    return None


def _check_objective(fun, jac, x, args):
    """Call ``fun`` (and ``jac``) once from Python on a copy of one start, so that a function
    that cannot take ``(x, *args)``, or returns the wrong thing, is named in a clear error
    rather than in numba's typing error from inside the batched loop."""
    calls = [("fun", fun)] if jac is True else [("fun", fun), ("jac", jac)]
    for name, function in calls:
        try:
            value = function(x.copy(), *args)
        except (TypeError, numba.core.errors.NumbaError) as error:
            first = str(error).strip().splitlines()[0]
            raise ValueError(f"minimize_batch cannot call {name}(x, *args) with one start's x (a "
                             f"1-D {x.dtype} array of {x.size}) and args={args!r}: {first}") \
                from None
        if jac is True and not (isinstance(value, tuple) and len(value) == 2):
            raise ValueError("with jac=True, fun must return a tuple (f, g); got "
                             f"{type(value).__name__}")
        if name == "fun" and jac is not True and isinstance(value, tuple):
            raise ValueError(f"fun returned a tuple of {len(value)} items, not a scalar; if fun "
                             "returns (f, g), pass jac=True")


def minimize_batch(fun, x0, args=(), method="adam", jac=True, bounds=None, tol=None,
                   options=None):
    """Run independent minimizations from each row of ``x0``, vectorised across the starts and in
    parallel on CPU threads.

    The batched sibling of :func:`adamnb.minimize`, for multi-start global search: the same method,
    options and bounds for every start. ``fun`` and ``jac`` must be numba-jitted (``@numba.njit``)
    functions of one start's 1-D ``x`` (``jac=True``: ``fun`` returns ``(f, g)``), as the test
    functions in :mod:`adamnb.problems.functions` are. Each start's result equals, bit for bit, that
    of ``adamnb.minimize(fun, x0[j], ...)``.

    Parameters
    ----------
    fun, jac : numba-jitted callables, or jac=True
        Written for one start. They are compiled into the batched loop, which runs one step of
        many starts per vector instruction, where that cannot change a result and they do not
        allocate (see :mod:`adamnb.optimize._batch`): give a gradient function an allocation-free
        ``into`` (as in :func:`adamnb.minimize`'s Notes) for the fastest loop. Otherwise they are
        called once per start and step, with the same results.
    x0 : array_like, shape (k, n)
        One start per row (float32 stays float32, anything else becomes float64). Not modified.
    args : tuple
        Extra arguments for ``fun`` and ``jac``, the same for every start.
    method : str
        As in :func:`adamnb.minimize`.
    bounds, tol, options
        As in :func:`adamnb.minimize` (``maxiter``, ``gtol``, ``disp``, ``fast`` and the method's
        hyperparameters; ``return_all``, ``groups`` and the options of the single-start loops,
        ``compiled``, ``parallel`` and ``finite_diff_rel_step``, are not supported here). An
        unknown option is an error, not a warning.

    Returns
    -------
    OptimizeResult
        Arrays over the starts: ``x`` (k, n), ``fun`` (k,), ``jac`` (k, n), ``nit``, ``nfev``,
        ``njev``, ``status`` and ``success`` (k,), ``message`` (a list); ``best``, the index of the
        start with the lowest finite final ``fun`` among those without status 3, or, when every
        start met NaN or inf (status 3), among all of them (each returns its last finite
        iterate: check ``res.status[res.best]``); None only when no start has a finite
        ``fun`` (every start's first evaluation was not finite).

    Raises
    ------
    ValueError
        ``fun`` or ``jac`` not jitted, ``x0`` not of shape (k, n) or not finite, an iterator as
        ``args``, ``return_all``, an unknown or bad option, a gradient of the
        wrong shape, or ``fun`` and ``jac`` that cannot be called with one start's ``x`` and
        ``args`` as given.
    TypeError
        ``method`` is not a string (a callable method is not supported); ``options`` is not a
        mapping.

    Examples
    --------
    >>> import numpy as np, adamnb
    >>> from adamnb.problems.functions import get
    >>> rastrigin = get("rastrigin", n=2)
    >>> starts = np.random.default_rng(0).uniform(-5.12, 5.12, size=(1000, 2))
    >>> res = adamnb.minimize_batch(rastrigin.value_and_grad, starts, jac=True,
    ...                             options={"lr": 0.05, "maxiter": 2000})
    >>> bool(res.fun[res.best] < 1e-8)
    True
    """
    if not isinstance(method, str):
        raise TypeError(f"minimize_batch takes a method name (one of adamnb.METHODS), got "
                        f"{method!r}; a callable method runs one start at a time: call "
                        f"adamnb.minimize (or scipy.optimize.minimize) per start")
    rule = rules.get_rule(method)
    options = as_options(options)
    _check_batch_options(rule, options)
    if tol is not None:
        options.setdefault("gtol", tol)
    combined = jac is True
    if not is_jitted(fun) or not (combined or is_jitted(jac)):
        raise ValueError("minimize_batch needs numba-jitted fun and jac (or fun returning (f, g) "
                         "with jac=True); for Python objectives call adamnb.minimize per start")
    run = prepare(rule, args, options)
    if run.groups is not None:
        raise ValueError("minimize_batch runs without groups; give each start's groups to "
                         "adamnb.minimize")
    if run.record:
        raise ValueError("minimize_batch does not support return_all")
    if run.stochastic:
        raise ValueError("minimize_batch takes a fixed args tuple, not an iterator")

    X = np.array(x0, copy=True)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"x0 must have shape (k, n) with k, n >= 1, got {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"x0 must be real numbers, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32 if X.dtype == np.float32 else np.float64)
    if not np.isfinite(X).all():
        raise ValueError("x0 must be finite")
    k, n = X.shape
    run.bind(n)
    bound_arrays = as_bounds(bounds, n, X.dtype)
    lower, upper = bound_arrays if bound_arrays is not None else (X[0, :0], X[0, :0])
    if bound_arrays is not None:
        for row in X:
            cpu.project_vector(row, lower, upper)

    states = rule.state_vectors(run.options, n, X.dtype, starts=k)
    carries = rule.carry_vector(run.options, X.dtype, starts=k)
    rows = states.shape[1]
    F, norms = np.empty(k), np.empty(k, dtype=X.dtype)
    G = np.empty_like(X)
    shape_ok = np.zeros(k, dtype=np.bool_)
    arity = len(run.args)
    _check_objective(fun, jac, X[0], run.args)
    _first_evaluation(fun, jac, arity)(run.args, X, F, G, norms, lower, upper, shape_ok)
    if not shape_ok.all():
        raise ValueError("The gradient's shape differs from x's; jac must return one derivative "
                         "per element of x")
    counts = np.zeros((k, 3), dtype=np.int64)
    counts[:, 1:] = 1
    status = np.full(k, _RUNNING, dtype=np.int64)
    status[~(np.isfinite(F) & np.isfinite(norms))] = 3

    stream = run.stream(X.dtype)
    bounded = bound_arrays is not None
    lower_, upper_ = (lower, upper) if bounded else (X[0, :1], X[0, :1])  # read, never used
    loop, pattern, t = None, None, 1
    while t <= run.maxiter and (status == _RUNNING).any():
        table = stream.columns(t, block_length(t, record=False))
        if rule.reductions:
            first = np.flatnonzero(status == _RUNNING)[0]
            loop = loop or compile_loop(rule, fun, jac, bounded, arity, run.fast, (
                tuple(run.args), X[first], F[first], G[first], X[first], X[first], norms[first],
                states[first], carries[first], table, X[first], lower, upper, run.gtol,
                np.empty(0), X[first:first], counts[first]))
            _run_starts(loop, run, X, F, G, norms, states, carries, table, lower, upper, status,
                        counts)
            t += table.shape[1]
            continue
        merged = _pattern(table, _branch_rows(rule))
        merged = merged if pattern is None else _merge(pattern, merged)
        arguments = (run.args, X, F, G, norms, states, table, lower_, upper_, run.gtol, status,
                     counts)
        if merged != pattern:
            pattern = merged
            loop = _compiled_batched_loop(rule, fun, jac, bounded, arity, n, rows, run.fast,
                                          pattern, arguments + (0, 0))
        _run_tiles(loop, arguments, tiles=-(-k // loop.tile_width))
        t += table.shape[1]
    running = status == _RUNNING
    converged = running & (norms <= run.gtol) if run.gtol > 0 else np.zeros(k, bool)
    status[running] = np.where(converged[running], 0, 1)


    def reevaluate(points):
        # fun and jac at an output x (schedule-free AdamW's), as minimize gives them.
        points = np.ascontiguousarray(points)
        values, gradients = np.empty(k), np.empty_like(points)
        measures, fine = np.empty(k, dtype=X.dtype), np.zeros(k, dtype=np.bool_)
        _first_evaluation(fun, jac, arity)(run.args, points, values, gradients, measures, lower,
                                           upper, fine)
        return values, gradients, counts[:, 1] + 1, counts[:, 2] + 1

    result = build_result(run, X, F, G, counts[:, 0].copy(), counts[:, 1].copy(),
                          counts[:, 2].copy(), status, state=[(states, carries)],
                          reevaluate=reevaluate)
    result.best = _best(result.fun, status)
    return result
