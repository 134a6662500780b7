"""CPU kernels: a rule's element math over whole vectors, in place, serial or threaded.

Every kernel here is generated from one element function, never written per rule:

* :func:`cpu_kernel` -- ``kernel(x, g, state, carry, c)``: one loop ``x[i] = element(x[i], g[i],
  state, i, c)``, the optimizer classes' step.
* :func:`fused_kernel` -- ``kernel(x, g, state, carry, table, column, previous, lower, upper)``:
  the host driver's step, :func:`adamnb.backends.elements.fused_update` per element (save the
  previous iterate, update, project onto the bounds) in one pass.
* :func:`fused_pass_of` -- the same step for one column of scalars, inlinable in any ``@njit``
  loop (the compiled drivers call it).

A rule with reductions inside its step (:class:`adamnb.optim.UpdateRule`: LAMB, Prodigy,
Adafactor, NovoGrad) gets the same kernels with a first pass before the element loop
(:func:`step_scalars_of`): ``reduce`` per element, its terms summed in chunks of ``SUM_CHUNK``
elements, then ``finish`` and ``advance`` on the sums (followed by the number of elements, as
:class:`adamnb.optim.UpdateRule` documents). Within a chunk, element ``i`` (counted
from the chunk's start) goes to lane ``i % SUM_LANES``; each lane sums its elements in order, the
lanes are added in order, then the chunks' sums in order, all in x's dtype. The order is fixed by
the indices alone, never by the machine or the thread count: the threaded kernels fold whole
chunks per thread and give the serial kernels' bits. The lanes let the pass vectorise (an
in-order sum is one long chain of additions, which LLVM may not reorder): its per-element work
runs in a loop of its own that stores the terms of ``SUM_BLOCK`` elements (they stay in the L1
cache), then :func:`add_lane_rows` adds them into the lanes as one LLVM vector.
``carry`` is the rule's carried scalars (an array of x's dtype, empty for most rules).

And the drivers' measure:

* :func:`stationarity_norm` -- the convergence measure of every CPU driver: the infinity-norm of
  the (projected) gradient, NaN when any element of ``g`` is not finite;
  :func:`store_stationarity_norm` copies a gradient into the driver's buffer and measures it in
  the same call.

Each is compiled serially (``range``) or across threads (``prange``); elements are independent, so
both give the same bits. A kernel is compiled once per dtype: the per-step scalars ``c`` arrive as
a tuple of x's dtype (:class:`adamnb.optim.CoefficientStream`) and the arrays keep theirs, so
nothing recompiles after the first step and float32 work is never promoted to float64.

Kernels are cached on disk by numba. The closure captures the element (a ``register_jitable``
function, pickled by reference), the loop kind and the source stamp of the element's module and of
:mod:`adamnb.backends.elements` (:func:`adamnb.backends.jit.source_stamp`), which makes the cache
entry of every (rule, loop kind, dtype) distinct, stable across processes, and renewed when the
element's code changes.

:func:`strided_view` is the compiled drivers' window onto one start's coordinates inside a batch
laid out start-innermost (:mod:`adamnb.optimize._batch`): a 1-D view without a reference count;
:func:`block_view` the batch's window onto its state rows, a 2-D view whose pointer LLVM can
relate to the buffer's (which vectorisation needs); :func:`add_lane_rows` the sums' lanes.
"""

import sys

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, ir_utils
from numba.extending import intrinsic
from numba.np.unsafe.ndarray import to_fixed_tuple

from adamnb.backends import elements
from adamnb.backends.elements import fold_max, fused_update, project, stationarity
from adamnb.backends.jit import elementwise, generated_element, jit, source_stamp

__all__ = ["PARALLEL_THRESHOLD", "SUM_CHUNK", "SUM_LANES", "cpu_kernel", "fused_kernel",
           "fused_update_of", "fused_pass_of", "step_scalars_of", "rule_stamp",
           "stationarity_norm", "stationarity_norm_serial", "stationarity_norm_parallel",
           "store_stationarity_norm", "compiled_entry",
           "project_vector", "use_parallel", "cast_coefficients", "element_stamp",
           "strided_view", "block_view", "add_lane_rows"]

#: Vectors at least this long use the threaded kernels when the caller leaves the choice to us.
#: numba's OpenMP worker threads keep spinning for a few milliseconds after a threaded kernel
#: returns; in a training loop they take the cores the next matrix product's BLAS threads need,
#: which cost a NumPy MLP step 20% with a 10^6-parameter threaded update on 2 cores
#: (``benchmarks/bench_threads.py``). A memory-bound update gains little from threads below some
#: 10 ms of serial work (about 2 * 10^7 float32 parameters of Adam), so below that size the
#: serial kernel is the default; ``parallel=True`` or ``backend="parallel"`` asks for threads.
PARALLEL_THRESHOLD = 1 << 24
#: Elements per chunk of the threaded norm: each thread folds whole chunks, then one thread folds
#: the chunks' results, so the result does not depend on the number of threads.
_NORM_CHUNK = 1 << 14
#: Elements per chunk of the sums a rule takes inside its step (see the module notes).
SUM_CHUNK = 1 << 14
#: Partial sums per term within a chunk (module notes): 16 float32 or float64 lanes.
SUM_LANES = 16
#: Elements whose terms are stored, then added into the lanes, at a time (a multiple of
#: SUM_LANES): the terms stay in the L1 cache.
SUM_BLOCK = 1 << 10

_kernels = {}


def element_stamp(element):
    """:func:`adamnb.backends.jit.source_stamp` of ``element`` and the shared per-element code:
    what a cached kernel around ``element`` captures (module notes)."""
    return source_stamp(element, elements)


def rule_stamp(rule):
    """:func:`element_stamp` of ``rule``'s element and, for a rule with reductions, of its first
    pass, with the names of the rule's functions: what a cached kernel around the rule captures.

    The names matter for a rule's copy (``dataclasses.replace``) with another ``reduce`` from the
    same file: its first pass is generated under the rule's name, and without them a second
    process would load the first one's kernel from the disk cache."""
    pieces = [f for f in rule.compiled if f is not None]
    names = "+".join(f"{f.__module__}.{f.__qualname__}" for f in pieces)
    if rule.reduce is not None:
        pieces.append(sys.modules[__name__])  # the sums' code (_SUMS_SOURCE) lives here
    return f"{source_stamp(*pieces, elements)}|{names}"


_CHUNK_SOURCE = """\
def {name}(x, g, state, carry, c, k, partial):
    if k < 0:  # never: it tells LLVM that the indices below are not negative (see the blocks)
        return
    first = k * SUM_CHUNK
    count = min(x.size, first + SUM_CHUNK) - first
    terms = np.empty(({terms}, SUM_BLOCK), dtype=x.dtype)
    lanes = np.zeros(({terms}, SUM_LANES), dtype=x.dtype)
    # a block counter, not range(first, ..., SUM_BLOCK): LLVM must know that the indices are not
    # negative (numba wraps negative ones around) for the loop over a block to vectorise
    for block in range((count + SUM_BLOCK - 1) // SUM_BLOCK):
        start = first + block * SUM_BLOCK
        size = min(first + count - start, SUM_BLOCK)
        for i in range(size):
            values = reduce_element(x[start + i], g[start + i], state, start + i, carry, c)
            {stores}
        # whole rows of lanes, the last one padded with -0.0: x + -0.0 is x for every x
        rows = (size + SUM_LANES - 1) // SUM_LANES * SUM_LANES
        terms[:, size:rows] = -0.0
        for j in range({terms}):
            add_lane_rows(lanes[j], terms[j], rows)
    for j in range({terms}):
        for lane in range(SUM_LANES):
            partial[k, j] += lanes[j, lane]
"""

_SUMS_SOURCE = """\
def {name}(x, g, state, carry, c):
    chunks = (x.size + SUM_CHUNK - 1) // SUM_CHUNK
    partial = np.zeros((chunks, {terms}), dtype=x.dtype)
    for k in {loop}(chunks):
        # prange's counter is unsigned: k * SUM_CHUNK is then not an intp, and the threaded pass
        # did not vectorise (3.6 times the serial pass's time)
        chunk_sums(x, g, state, carry, c, np.intp(k), partial)
    sums = np.zeros({terms} + 1, dtype=x.dtype)
    for k in range(chunks):
        for j in range({terms}):
            sums[j] += partial[k, j]
    sums[{terms}] = x.size  # the element count (UpdateRule: finish's last "sum")
    return sums
"""


def _build_sums(rule, parallel):
    # The source is generated to spell out one store per term: the element returns a tuple,
    # which numba cannot index with a loop variable. One chunk's sums are a function of their
    # own, called with a signed chunk number from both loops.
    terms = len(rule.reductions)
    module = sys.modules[__name__]
    chunk_sums = generated_element(
        module, f"_chunk_sums_of_{rule.name}", _CHUNK_SOURCE.format(
            name=f"_chunk_sums_of_{rule.name}", terms=terms,
            stores="; ".join(f"terms[{j}, i] = values[{j}]" for j in range(terms))),
        np=np, SUM_CHUNK=SUM_CHUNK, SUM_BLOCK=SUM_BLOCK,
        SUM_LANES=SUM_LANES, reduce_element=rule.reduce, add_lane_rows=add_lane_rows)
    name = f"_sums_of_{rule.name}_{'threaded' if parallel else 'serial'}"
    source = _SUMS_SOURCE.format(name=name, terms=terms,
                                 loop="numba.prange" if parallel else "range")
    return generated_element(module, name, source, np=np, numba=numba, SUM_CHUNK=SUM_CHUNK,
                             chunk_sums=chunk_sums)


@elementwise
def _no_reductions(x, g, state, carry, c):
    return c


def _build_step_scalars(rule, parallel):
    if not rule.reductions:
        return _no_reductions
    sums_of, finish, advance = _build_sums(rule, parallel), rule.finish, rule.advance
    if advance is None:
        @elementwise
        def finished(x, g, state, carry, c):
            sums = sums_of(x, g, state, carry, c)
            return c + finish(sums, carry, c)

        return finished

    @elementwise
    def finished_and_advanced(x, g, state, carry, c):
        sums = sums_of(x, g, state, carry, c)
        extra = finish(sums, carry, c)
        carried = advance(sums, carry, c)
        for j in range(carry.size):
            carry[j] = carried[j]
        return c + extra

    return finished_and_advanced


def step_scalars_of(rule, parallel=False):
    """``rule``'s first pass, inlinable in any ``@njit`` function:
    ``step_scalars(x, g, state, carry, c)`` returns the scalars the element reads, ``c``
    followed by ``finish``'s (and updates the state and ``carry``); ``c`` itself for a rule
    without reductions. Threaded (``prange`` over chunks) when ``parallel``."""
    key = ("scalars", *rule.compiled, bool(parallel))
    if key not in _kernels:
        _kernels[key] = _build_step_scalars(rule, bool(parallel))
    return _kernels[key]


def _build_cpu_kernel(rule, parallel, cache=True):
    element = rule.element
    step_scalars = step_scalars_of(rule, parallel)
    loop = numba.prange if parallel else range
    stamp = rule_stamp(rule)

    @jit(parallel=parallel, cache=cache)
    def kernel(x, g, state, carry, c):
        stamp  # noqa: B018 -- in the closure: part of the disk cache's key (module notes)
        scalars = step_scalars(x, g, state, carry, c)
        for i in loop(x.size):
            x[i] = element(x[i], g[i], state, i, scalars)

    return kernel


def _build_fused_kernel(rule, parallel):
    update, n_coefficients = fused_update_of(rule), rule.n_coefficients
    step_scalars = step_scalars_of(rule, parallel)
    loop = numba.prange if parallel else range
    stamp = rule_stamp(rule)

    @jit(parallel=parallel)
    def kernel(x, g, state, carry, table, column, previous, lower, upper):
        stamp  # noqa: B018 -- in the closure: part of the disk cache's key (module notes)
        c = to_fixed_tuple(table[:, column], n_coefficients)
        scalars = step_scalars(x, g, state, carry, c)
        bounded = lower.size > 0
        for i in loop(x.size):
            x[i] = update(x, g, state, i, scalars, previous, lower, upper, bounded)

    return kernel


def cpu_kernel(rule, parallel):
    """The serial or threaded kernel ``kernel(x, g, state, carry, c)`` of ``rule``."""
    key = ("step", *rule.compiled, bool(parallel))
    if key not in _kernels:
        _kernels[key] = _build_cpu_kernel(rule, bool(parallel))
    return _kernels[key]


def fused_update_of(rule):
    """``rule``'s :func:`adamnb.backends.elements.fused_update` for the CPU, inlinable in any
    ``@njit`` loop (the compiled drivers call it)."""
    key = ("update", rule.element)
    if key not in _kernels:
        _kernels[key] = elementwise(fused_update(rule.element, project))
    return _kernels[key]


def fused_pass_of(rule):
    """``rule``'s whole step for the compiled drivers, inlinable in any ``@njit`` loop:
    ``fused_pass(x, g, state, carry, c, previous, point, lower, upper, bounded)`` with the step's
    scalars ``c``: the first pass of a rule with reductions, then
    :func:`adamnb.backends.elements.fused_update` per element, the new value written to ``x``
    and to ``point`` (the copy the objective gets). Serial."""
    key = ("pass", *rule.compiled)
    if key not in _kernels:
        update, step_scalars = fused_update_of(rule), step_scalars_of(rule, False)

        @elementwise
        def fused_pass(x, g, state, carry, c, previous, point, lower, upper, bounded):
            scalars = step_scalars(x, g, state, carry, c)
            for i in range(x.size):
                value = update(x, g, state, i, scalars, previous, lower, upper, bounded)
                x[i] = value
                point[i] = value

        _kernels[key] = fused_pass
    return _kernels[key]


def fused_kernel(rule, parallel):
    """The host driver's step ``kernel(x, g, state, carry, table, column, previous, lower,
    upper)`` of ``rule``, with the scalars of column ``column`` of ``table`` (a block of
    :meth:`adamnb.optim.CoefficientStream.columns`).

    In one pass (after the first pass of a rule with reductions): ``previous[:] = x``, the
    rule's update of every element and, when ``lower`` is not empty, the projection onto
    ``[lower, upper]``.
    """
    key = ("fused", *rule.compiled, bool(parallel))
    if key not in _kernels:
        _kernels[key] = _build_fused_kernel(rule, bool(parallel))
    return _kernels[key]


@elementwise
def _stationarity_term(x, g, lower, upper, i, bounded):
    if bounded:
        return stationarity(x[i], g[i], lower[i], upper[i], True)
    return stationarity(x[i], g[i], g[i], g[i], False)


@jit
def stationarity_norm_serial(x, g, lower, upper):
    bounded = lower.size > 0
    norm = _stationarity_term(x, g, lower, upper, 0, bounded)
    for i in range(1, g.size):
        norm = fold_max(norm, _stationarity_term(x, g, lower, upper, i, bounded))
    return norm


@jit(parallel=True)
def stationarity_norm_parallel(x, g, lower, upper):
    bounded = lower.size > 0
    chunks = (g.size + _NORM_CHUNK - 1) // _NORM_CHUNK
    partial = np.empty(chunks, dtype=g.dtype)
    for k in numba.prange(chunks):
        start = k * _NORM_CHUNK
        norm = _stationarity_term(x, g, lower, upper, start, bounded)
        for i in range(start + 1, min(g.size, start + _NORM_CHUNK)):
            norm = fold_max(norm, _stationarity_term(x, g, lower, upper, i, bounded))
        partial[k] = norm
    norm = partial[0]
    for k in range(1, chunks):
        norm = fold_max(norm, partial[k])
    return norm


@jit
def store_stationarity_norm(value, g, x, lower, upper):
    """``g[:] = value``, then :func:`stationarity_norm_serial` of ``(x, g)``: the host driver's
    one call per step for a gradient the user returned (one dispatch instead of a NumPy copy
    and a dispatch)."""
    for i in range(g.size):
        g[i] = value[i]
    return stationarity_norm_serial(x, g, lower, upper)


def compiled_entry(dispatcher, args):
    """The machine code of ``dispatcher`` for the types of ``args`` (compiled or loaded from the
    disk cache first if needed), callable as ``entry(*args)``.

    Calling it skips numba's typing of every argument (about 50 ns each per call); it is only
    valid for arguments of exactly those types (dtype, dimensions, layout), which the caller
    guarantees.
    """
    signature = tuple(dispatcher.typeof_pyval(argument) for argument in args)
    if signature not in dispatcher.overloads:
        dispatcher.compile(signature)
    return dispatcher.overloads[signature].entry_point


def stationarity_norm(x, g, lower, upper, parallel=False):
    """The convergence measure at ``x``: ``max_i |g_i|``, or with bounds (``lower`` not empty)
    the projected gradient's ``max_i |P(x_i - g_i) - x_i|``, in g's dtype; NaN when any ``g_i``
    is NaN or infinite, wherever it is (:mod:`adamnb.backends.elements`)."""
    if parallel:
        return stationarity_norm_parallel(x, g, lower, upper)
    return stationarity_norm_serial(x, g, lower, upper)


@jit
def project_vector(x, lower, upper):
    """Project ``x`` onto ``[lower, upper]`` in place (the drivers' projection of ``x0``)."""
    for i in range(x.size):
        x[i] = project(x[i], lower[i], upper[i])


def use_parallel(parallel, size):
    """Resolve a ``parallel`` option (True, False or None for automatic) for ``size`` elements."""
    if parallel is None:
        return size >= PARALLEL_THRESHOLD
    return bool(parallel)


def cast_coefficients(coefficients, dtype):
    """The per-step scalars as a tuple of ``dtype`` scalars (rounded once, as torch does)."""
    scalar = np.dtype(dtype).type
    return tuple(scalar(value) for value in coefficients)


def _view_codegen(layout):
    """The code of a view of an array's memory from item ``start``, with no reference count (a
    null meminfo): ``layout(intp, *sizes)`` gives its shape and its strides in items."""
    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array

        source = make_array(signature.args[0])(context, builder, args[0])
        intp = context.get_value_type(numba.types.intp)
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        first, *sizes = (context.cast(builder, value, kind, numba.types.intp)
                         for value, kind in zip(args[1:], signature.args[1:]))
        shape, steps = layout(intp, *sizes)
        view = make_array(signature.return_type)(context, builder)
        populate_array(view, data=builder.gep(source.data, [first]),
                       shape=cgutils.pack_array(builder, shape),
                       strides=cgutils.pack_array(builder, [builder.mul(step, intp(itemsize))
                                                            for step in steps]),
                       itemsize=intp(itemsize), meminfo=None)
        return view._getvalue()

    return codegen


@intrinsic
def strided_view(typingctx, array, start, count, step):
    """``array.flat[start : start + count * step : step]`` as a 1-D array that shares ``array``'s
    memory and has no reference count (a null meminfo): the compiled batch passes each start's
    coordinates to the objective this way from inside a function compiled without numba's
    runtime, where slicing would need one. The caller keeps ``array`` alive while the view is
    used. ``array`` must be C-contiguous."""
    if not (isinstance(array, numba.types.Array) and array.layout == "C"):
        return None
    result = numba.types.Array(array.dtype, 1, "A")
    return result(array, start, count, step), _view_codegen(lambda intp, count, step: (
        [count], [step]))


@intrinsic
def block_view(typingctx, array, start, rows, columns):
    """``array.flat[start : start + rows * columns].reshape(rows, columns)`` as a C-contiguous
    2-D array that shares ``array``'s memory and has no reference count, as :func:`strided_view`.

    Unlike ``reshape`` (a call numba makes at run time), its data pointer is visibly ``array``'s
    plus a constant offset: LLVM then knows how the view's elements and ``array``'s relate and can
    vectorise a loop that writes both, where with an opaque pointer it must assume they may
    overlap (the compiled batch's tiles, whose state rows live in the tile's one buffer)."""
    if not (isinstance(array, numba.types.Array) and array.layout == "C"):
        return None
    result = numba.types.Array(array.dtype, 2, "C")
    return result(array, start, rows, columns), _view_codegen(lambda intp, rows, columns: (
        [rows, columns], [columns, intp(1)]))


@intrinsic
def add_lane_rows(typingctx, lanes, terms, rows):
    """``lanes[:] += terms[row : row + SUM_LANES]`` for ``row`` in ``range(0, rows,
    SUM_LANES)``, in that order: each lane sums its elements in order, one row at a time, in the
    arrays' dtype (``rows`` a multiple of :data:`SUM_LANES`; both arrays C-contiguous, ``lanes``
    of length :data:`SUM_LANES`).

    The same additions as the two nested loops, with the lanes as one LLVM vector held in
    registers: the lanes are independent, so this gives their bits on any instruction set (the
    vector is split into whatever width the machine has). numba leaves LLVM's SLP vectoriser
    off, which is what would have joined the 16 additions of the loops' fully unrolled inner
    loop; as loops, the sums of a rule's first pass took two thirds of its time (Adafactor,
    ``benchmarks/bench_update.py``)."""
    arrays = (lanes, terms)
    if not all(isinstance(a, numba.types.Array) and a.ndim == 1 and a.layout == "C"
               and isinstance(a.dtype, numba.types.Float) for a in arrays) \
            or lanes.dtype != terms.dtype or not isinstance(rows, numba.types.Integer):
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        lanes_data = make_array(signature.args[0])(context, builder, args[0]).data
        terms_data = make_array(signature.args[1])(context, builder, args[1]).data
        rows = context.cast(builder, args[2], signature.args[2], numba.types.intp)
        item = context.get_data_type(signature.args[0].dtype)
        vector = ir.VectorType(item, SUM_LANES)
        align = context.get_abi_sizeof(item)
        intp = context.get_value_type(numba.types.intp)
        pointer = builder.bitcast(lanes_data, vector.as_pointer())
        total = cgutils.alloca_once(builder, vector)  # promoted to a register by LLVM
        builder.store(builder.load(pointer, align=align), total)
        with cgutils.for_range_slice(builder, intp(0), rows, intp(SUM_LANES), intp=intp) as (
                row, _):
            row_pointer = builder.bitcast(builder.gep(terms_data, [row]), vector.as_pointer())
            builder.store(builder.fadd(builder.load(total), builder.load(row_pointer,
                                                                         align=align)), total)
        builder.store(builder.load(total), pointer, align=align)
        return context.get_dummy_value()

    return numba.types.void(lanes, terms, rows), codegen


def _view_aliases(lhs, args, alias_map, arg_aliases):
    ir_utils._add_alias(lhs, args[0].name, alias_map, arg_aliases)


# numba's dead-code removal drops writes to an array it believes nothing else can see; a view made
# by an intrinsic is such an array unless numba is told that it aliases its source.
ir_utils.alias_func_extensions[("strided_view", __name__)] = _view_aliases
ir_utils.alias_func_extensions[("block_view", __name__)] = _view_aliases
