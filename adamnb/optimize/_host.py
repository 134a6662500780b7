"""The host driver: NumPy arrays, Python callables, one fused compiled step per iteration.

:class:`Objective` puts ``fun`` and ``jac`` (a callable, True, or finite differences) behind one
call that writes the gradient into the driver's own buffer; :class:`HostSteps` is the step
machinery :func:`adamnb.optimize._common.iterate` runs. Each step is one call of the rule's fused
kernel (:func:`adamnb.backends.cpu.fused_kernel`: save the previous iterate, update, project) and
one of the convergence measure, serial or threaded by the vector's length.

As scipy does, every call of the user's code gets the point as its own new array (a ``fun`` that
keeps or changes its argument changes nothing in the run), and the gradient the user returns is
copied into the driver's buffers (a ``jac`` that reuses one output array cannot change
``res.jac``, nor the last finite gradient returned on status 3).

Finite differences follow ``scipy.optimize.approx_derivative`` (scipy/optimize/_numdiff.py):
the same relative steps, one-sided schemes next to a bound, steps shrunk to fit a box narrower
than them, and never a point outside the bounds. A variable fixed by its bounds (lower = upper)
has no difference to take: its derivative is reported as 0 (scipy removes such variables and
reports NaN), and the projection keeps it fixed.
"""


import numpy as np

from adamnb.backends import cpu
from adamnb.optim.matrix import MatrixOps

__all__ = ["Objective", "HostSteps", "FD_SCHEMES"]

FD_SCHEMES = ("2-point", "3-point")


class Objective:
    """``fun`` and ``jac`` behind one call, counting evaluations as scipy does.

    ``objective(x, args, out) -> (f, g)`` evaluates at a copy of ``x``; ``g`` is the gradient the
    user returned (checked, for the driver to copy into its buffer), or None where it was
    written into ``out`` in x's dtype (finite differences). ``jac`` is a callable ``jac(x, *args)``, True (``fun`` returns
    ``(f, g)``), or None, False, '2-point' or '3-point' (finite differences with relative step
    ``rel_step``, see the module notes). ``nfev`` counts every call of ``fun`` (finite-difference
    points included), ``njev`` every gradient: a call of ``jac`` or one difference estimate.

    Raises
    ------
    ValueError
        An unknown ``jac`` ('cs', complex-step differences, is not offered: the update rules work
        on real arrays).
    """

    def __init__(self, fun, jac, x, bounds, rel_step):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {fun!r}")
        self.fun = fun
        self.nfev = self.njev = 0
        self.dtype, self.shape = x.dtype, x.shape
        self.bounds = bounds
        if jac is None or jac is False:
            jac = "2-point"
        if isinstance(jac, str):
            if jac not in FD_SCHEMES:
                raise ValueError(f"jac must be callable, True, False, None, '2-point' or "
                                 f"'3-point'; got {jac!r}")
            self.fd_scheme = jac
            if rel_step is not None and rel_step.ndim == 1 and rel_step.size != x.size:
                raise ValueError(f"finite_diff_rel_step has {rel_step.size} values but x has "
                                 f"{x.size}")
            self.rel_step = rel_step
        elif jac is True or callable(jac):
            self.fd_scheme = None
        else:
            raise ValueError(f"jac must be callable, True, False, None, '2-point' or '3-point'; "
                             f"got {jac!r}")
        self.jac = jac

    def value(self, x, args):
        """``fun`` at a copy of ``x``, as a float."""
        self.nfev += 1
        return _scalar(self.fun(x.copy(), *args))

    def __call__(self, x, args, out):
        """``(f, gradient)`` at a copy of ``x``: the gradient as the user returned it (checked
        by :meth:`gradient`, still to be copied into ``out``), or None where it was written into
        ``out`` (finite differences)."""
        if self.jac is True:
            self.nfev += 1
            self.njev += 1
            result = self.fun(x.copy(), *args)
            if not isinstance(result, tuple) or len(result) != 2:
                raise ValueError("with jac=True, fun must return a tuple (f, g)")
            g = self.gradient(result[1])
            return _scalar(result[0]), g
        self.nfev += 1
        f = _scalar(self.fun(x.copy(), *args))
        self.njev += 1
        if self.fd_scheme is None:
            return f, self.gradient(self.jac(x.copy(), *args))
        self._difference(x, f, args, out)
        return f, None

    def gradient(self, value):
        """The gradient the user returned, as an array of x's shape with real entries.

        Raises
        ------
        ValueError
            Another shape, or entries that are not real numbers.
        """
        g = value if type(value) is np.ndarray else np.asarray(value)
        if g.shape != self.shape:
            raise ValueError(f"The gradient has shape {g.shape} but x has shape {self.shape}; "
                             "jac must return one derivative per element of x")
        if g.dtype.kind not in "biuf":
            raise ValueError(f"The gradient must be real numbers, got dtype {g.dtype}")
        return g

    def _difference(self, x0, f0, args, out):
        """scipy's approx_derivative, column by column (see the module notes)."""
        n = x0.size
        three = self.fd_scheme == "3-point"
        h = _absolute_step(self.rel_step, x0, 1.0 / 3.0 if three else 0.5)
        if self.bounds is not None:
            lower, upper = self.bounds
            fixed = lower == upper
            h, one_sided = _adjust_to_bounds(x0.astype(float), h, 1 if not three else 2,
                                             "2-sided" if three else "1-sided", lower, upper)
        else:
            fixed = np.zeros(n, bool)
            one_sided = np.full(n, not three)
        for i in range(n):
            if fixed[i]:
                out[i] = 0
                continue
            if not three:
                point = x0.copy()
                point[i] = x0[i] + h[i]
                out[i] = (self.value(point, args) - f0) / ((x0[i] + h[i]) - x0[i])
                continue
            first, second = x0.copy(), x0.copy()
            if one_sided[i]:
                first[i], second[i] = x0[i] + h[i], x0[i] + 2 * h[i]
            else:
                first[i], second[i] = x0[i] - h[i], x0[i] + h[i]
            f1, f2 = self.value(first, args), self.value(second, args)
            if one_sided[i]:
                out[i] = (-3.0 * f0 + 4 * f1 - f2) / (second[i] - x0[i])
            else:
                out[i] = (f2 - f1) / (second[i] - first[i])


def _scalar(value):
    """A real scalar from what ``fun`` returned: a number or any size-1 array, as scipy takes."""
    if type(value) is float:  # the common cases, checked first for a lean step
        return value
    if type(value) is np.float64:
        return float(value)
    if isinstance(value, tuple):
        raise ValueError(f"The objective function returned a tuple of {len(value)} items, not a "
                         "scalar; if fun returns (f, g), pass jac=True")
    f = np.asarray(value)
    if f.size != 1:
        raise ValueError("The user-provided objective function must return a scalar value, "
                         f"got an array of shape {f.shape}")
    if f.dtype.kind not in "biuf":
        raise ValueError(f"The objective function returned {value!r}; expected a real number")
    return float(f.item())


def _absolute_step(rel_step, x0, power):
    """scipy's _compute_absolute_step, with the relative step from x's dtype."""
    sign = (x0 >= 0).astype(float) * 2 - 1
    default = np.finfo(x0.dtype).eps ** power
    if rel_step is None:
        return default * sign * np.maximum(1.0, np.abs(x0))
    step = rel_step * sign * np.abs(x0)
    # A zero step (x = 0, or rel_step = 0) would divide by zero: scipy falls back to the default.
    tiny = ((x0 + step) - x0) == 0
    return np.where(tiny, default * sign * np.maximum(1.0, np.abs(x0)), step)


def _adjust_to_bounds(x0, h, num_steps, scheme, lower, upper):
    """scipy's _adjust_scheme_to_bounds: steps that keep every point inside the bounds."""
    if scheme == "1-sided":
        use_one_sided = np.ones_like(h, dtype=bool)
    else:
        h = np.abs(h)
        use_one_sided = np.zeros_like(h, dtype=bool)
    h_total = h * num_steps
    h_adjusted = h.copy()
    lower_dist = x0 - lower
    upper_dist = upper - x0
    if scheme == "1-sided":
        x = x0 + h_total
        violated = (x < lower) | (x > upper)
        fitting = np.abs(h_total) <= np.maximum(lower_dist, upper_dist)
        h_adjusted[violated & fitting] *= -1
        forward = (upper_dist >= lower_dist) & ~fitting
        h_adjusted[forward] = upper_dist[forward] / num_steps
        backward = (upper_dist < lower_dist) & ~fitting
        h_adjusted[backward] = -lower_dist[backward] / num_steps
    else:
        central = (lower_dist >= h_total) & (upper_dist >= h_total)
        forward = (upper_dist >= lower_dist) & ~central
        h_adjusted[forward] = np.minimum(h[forward], 0.5 * upper_dist[forward] / num_steps)
        use_one_sided[forward] = True
        backward = (upper_dist < lower_dist) & ~central
        h_adjusted[backward] = -np.minimum(h[backward], 0.5 * lower_dist[backward] / num_steps)
        use_one_sided[backward] = True
        min_dist = np.minimum(upper_dist, lower_dist) / num_steps
        adjusted_central = ~central & (np.abs(h_adjusted) <= min_dist)
        h_adjusted[adjusted_central] = min_dist[adjusted_central]
        use_one_sided[adjusted_central] = False
    return h_adjusted, use_one_sided


class HostSteps:
    """The host driver's step machinery for :func:`adamnb.optimize._common.iterate`.

    One call per piece of the run's :class:`adamnb.optim.groups.Layout` (the whole vector
    without groups): its rule's fused kernel with its group's scalars, or, for a piece updated
    as a matrix, the rule's matrix step between the same saving of the previous iterate and
    projection onto the bounds. A kernel is called through its machine code for the run's
    argument types (:func:`adamnb.backends.cpu.compiled_entry`): the arrays are the driver's own
    and keep their types, so numba need not type them at every step. The objective's gradient is
    copied into the driver's buffer and measured in one compiled call
    (:func:`adamnb.backends.cpu.store_stationarity_norm`).
    """

    def __init__(self, layout, objective, x, lower, upper, parallel):
        self.layout = layout
        self.objective = objective
        self.lower, self.upper = lower, upper
        self.previous = np.empty_like(x)
        self.threaded = threaded = cpu.use_parallel(parallel, x.size)
        self.kernels = [None if piece.matrix else
                        cpu.fused_kernel(layout.groups[piece.group].rule,
                                         cpu.use_parallel(parallel, piece.size))
                        for piece in layout.pieces]
        # One group: its scalars are the whole table (no slicing per step).
        self.rows = [None if len(layout.groups) == 1 else layout.rows(index)
                     for index in range(len(layout.pieces))]
        self._table = None  # the block of scalars the entries were resolved for
        self._entries = [None] * len(layout.pieces)
        # Bound once: the lookups are a measurable part of a host step.
        self._objective = objective.__call__
        self._store = None if threaded else cpu.store_stationarity_norm
        self.matrix_ops = MatrixOps() if any(p.matrix for p in layout.pieces) else None

    def update(self, x, g, states, table, column):
        layout, lower, upper, previous = self.layout, self.lower, self.upper, self.previous
        if table is not self._table:  # a new block: the table's layout may differ
            self._entries = [None] * len(self.kernels)
            self._table = table
        for index, kernel in enumerate(self.kernels):
            state, carry = states[index]
            rows = table if self.rows[index] is None else table[self.rows[index]]
            xv, gv, saved = layout.view(x, index), layout.view(g, index), \
                layout.view(previous, index)
            bounds = lower if lower.size == 0 else layout.view(lower, index)
            top = upper if upper.size == 0 else layout.view(upper, index)
            if kernel is not None:
                arguments = (xv, gv, state, carry, rows, column, saved, bounds, top)
                entry = self._entries[index]
                if entry is None:
                    entry = self._entries[index] = cpu.compiled_entry(kernel, arguments)
                entry(*arguments)
                continue
            saved[:] = xv
            group = layout.groups[layout.pieces[index].group]
            c = rows[:, column].astype(x.dtype)
            group.rule.matrix.step(layout.matrix(x, index), layout.matrix(g, index), state,
                                   dict(zip(group.rule.scalars, c)), group.options,
                                   self.matrix_ops)
            if bounds.size:
                cpu.project_vector(xv, bounds, top)

    def evaluate(self, x, args, out):
        f, value = self._objective(x, args, out)
        if value is not None:
            if self._store is not None and value.dtype == out.dtype:
                return f, self._store(value, out, x, self.lower, self.upper)
            np.copyto(out, value, casting="unsafe")
        return f, cpu.stationarity_norm(x, out, self.lower, self.upper, self.threaded)

    def restore(self, x):
        np.copyto(x, self.previous)

    @staticmethod
    def snapshot(x):
        return x.copy()
