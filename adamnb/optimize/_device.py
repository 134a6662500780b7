"""``minimize`` on CUDA device arrays: the iterate never leaves the GPU.

:func:`minimize_on_device` runs the iteration of :mod:`adamnb.optimize._common` (the host
driver's, with the same options, status codes and result) with :class:`DeviceSteps`: ``x0`` is a
device array, ``fun`` and ``jac`` take a device vector and return the gradient as a device array,
and per step only two scalars cross the bus: the objective value ``f`` (which ``fun`` returns as a
host number) and the convergence measure, reduced on the device.

Why this shape
    A step is two kernels around the user's objective: one fused pass
    (:func:`adamnb.backends.cuda.cuda_fused_step`) that saves ``x`` into ``previous``, applies the
    rule's element, projects onto the bounds and writes the new iterate into ``point``, the copy
    the objective is evaluated at (so an objective that changes its argument cannot change the
    run); then one reduction (:meth:`adamnb.backends.cuda.Reduction.stationarity`) that copies
    the returned gradient into the driver's own buffer (a ``fun`` that reuses one output array
    cannot change ``res.jac`` or the last finite gradient) while folding the convergence measure.
    Keeping ``previous`` on the device is what lets status 3 return the last finite iterate
    without a host copy. The per-step scalars come from the same
    :class:`adamnb.optim.CoefficientStream` as every CPU driver's, so a GPU run follows the CPU
    run step for step, up to the GPU's fused multiply-adds.

What differs from the host driver
    * ``jac`` must be True or a callable returning device arrays: finite differences would call
      ``fun`` once per element, each with a host round trip, which is never what one wants on a
      GPU; they raise ValueError.
    * The point ``fun`` gets is one private device buffer, rewritten at every step (a fresh
      device allocation per step would cost more than many steps): changing it is harmless, but
      keeping it needs a copy.
    * ``return_all`` copies every iterate to the host (``allvecs`` holds NumPy arrays); the
      options ``parallel`` and ``finite_diff_rel_step`` have no effect.
    * The callback receives a device copy of the iterate (``callback(xk)``), or an
      ``OptimizeResult`` whose ``x`` is one (``callback(intermediate_result)``).

``numba.cuda`` is imported only when the function runs.
"""

import math

import numpy as np

from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules
from adamnb.optim.matrix import MatrixOps
from adamnb.optimize._common import (as_bounds, build_result, iterate, prepare, reevaluator,
                                     warn_unused, wrap_callback)

__all__ = ["minimize_on_device", "DeviceSteps"]

#: Threads per block of every launch here (tests patch in a tiny value to force many blocks).
THREADS_PER_BLOCK = cuda_backend.DEFAULT_THREADS_PER_BLOCK


class _DeviceObjective:
    """``fun``/``jac`` behind one call ``(x, args) -> (f, g)``: f a float, g a device vector."""

    def __init__(self, fun, jac, x):
        if not (jac is True or callable(jac)):
            raise ValueError(f"jac={jac!r} is not available on device arrays: finite differences "
                             "would copy to the host once per element. Pass jac=True (fun "
                             "returns (f, g)) or a callable jac(x, *args), with g a device array")
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {fun!r}")
        self.fun, self.jac = fun, jac
        self.shape, self.dtype = x.shape, x.dtype
        self.nfev = self.njev = 0

    @staticmethod
    def _scalar(value):
        if type(value) is float:
            return value
        if isinstance(value, tuple):
            raise ValueError(f"The objective function returned a tuple of {len(value)} items, "
                             "not a scalar; if fun returns (f, g), pass jac=True")
        if cuda_backend.is_device_array(value):
            value = cuda_backend.as_device_array(value, "the objective's value").copy_to_host()
        f = np.asarray(value)
        if f.size != 1 or f.dtype.kind not in "biuf":
            raise ValueError(f"The objective function must return a real scalar (a number or a "
                             f"one-element device array), got {value!r}")
        return float(f.item())

    def _gradient(self, value):
        if isinstance(value, np.ndarray):
            raise TypeError("The gradient is a NumPy array on the host; with x0 on the device, "
                            "fun/jac must return the gradient as a device array (numba device "
                            "array or __cuda_array_interface__ object)")
        g = cuda_backend.as_device_array(value, "the gradient")
        if tuple(g.shape) != tuple(self.shape) or g.dtype != self.dtype:
            raise ValueError(f"The gradient is {g.dtype}{list(g.shape)} but x is "
                             f"{self.dtype}{list(self.shape)}; jac must return one derivative "
                             "per element of x, in x's dtype")
        if not g.is_c_contiguous():
            raise ValueError("The gradient must be a contiguous device array")
        return g

    def __call__(self, x, args):
        self.nfev += 1
        self.njev += 1
        if self.jac is True:
            result = self.fun(x, *args)
            if not isinstance(result, tuple) or len(result) != 2:
                raise ValueError("with jac=True, fun must return a tuple (f, g)")
            return self._scalar(result[0]), self._gradient(result[1])
        f = self._scalar(self.fun(x, *args))
        return f, self._gradient(self.jac(x, *args))


class DeviceSteps:
    """The device driver's step machinery for :func:`adamnb.optimize._common.iterate`: one
    :func:`adamnb.backends.cuda.fused_step` per piece of the run's layout (the whole vector
    without groups), with its group's scalars."""

    def __init__(self, layout, objective, x, lower, upper):
        cuda = cuda_backend.numba_cuda()
        self.layout = layout
        self.objective = objective
        self.lower, self.upper = lower, upper
        self.previous = cuda.device_array_like(x)
        self.point = cuda.device_array_like(x)
        self.point.copy_to_device(x)
        self.norm = cuda_backend.Reduction("max_abs", x.dtype, THREADS_PER_BLOCK)
        self.blocks = [cuda_backend.launch_blocks(piece.size, THREADS_PER_BLOCK)
                       for piece in layout.pieces]
        self.rows = [layout.rows(index) for index in range(len(layout.pieces))]
        self.scalar = np.dtype(x.dtype).type
        self.scratch = cuda_backend.StepScratch()
        has_matrices = any(piece.matrix for piece in layout.pieces)
        self.matrix_ops = MatrixOps(True, THREADS_PER_BLOCK) if has_matrices else None
        # The views of the driver's own vectors, made once (x is always this same array).
        self.views = [tuple(layout.view(array, index) if array.size else array
                            for array in (x, self.previous, self.point, lower, upper))
                      for index in range(len(layout.pieces))]

    def update(self, x, g, states, table, column):
        layout = self.layout
        for index, piece in enumerate(layout.pieces):
            group = layout.groups[piece.group]
            c = tuple(self.scalar(value) for value in table[self.rows[index], column])
            state, carry = states[index]
            xv, previous, point, lower, upper = self.views[index]
            if piece.matrix:  # what the fused pass does around an element, around the matrix step
                previous.copy_to_device(xv)
                group.rule.matrix.step(layout.matrix(x, index), layout.matrix(g, index), state,
                                       dict(zip(group.rule.scalars, c)), group.options,
                                       self.matrix_ops)
                if lower.size:
                    cuda_backend.project_vector(xv, lower, upper, THREADS_PER_BLOCK)
                point.copy_to_device(xv)
                continue
            cuda_backend.fused_step(group.rule, xv, layout.view(g, index), state, carry, c,
                                    previous, point, lower, upper, THREADS_PER_BLOCK,
                                    self.blocks[index], scratch=self.scratch)

    def evaluate(self, x, args, out):
        f, g = self.objective(self.point, args)
        return f, self.norm.stationarity(x, g, self.lower, self.upper, out)

    def evaluate_at(self, x, args, out):
        """:meth:`evaluate` at any device vector ``x`` (a result's evaluation point), which
        :meth:`evaluate` would not see: the objective gets the step's own copy of the iterate."""
        self.point.copy_to_device(x)
        return self.evaluate(x, args, out)

    def restore(self, x):
        x.copy_to_device(self.previous)

    @staticmethod
    def snapshot(x):
        return x.copy_to_host()


def _device_copy(x):
    copy = cuda_backend.numba_cuda().device_array(x.shape, x.dtype)
    copy.copy_to_device(x)
    return copy


def minimize_on_device(rule, fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
                       constraints=(), callback=None, **options):
    """Minimize ``fun`` from the device vector ``x0`` with ``rule``, keeping ``x`` on the GPU.

    The same contract as :func:`adamnb.minimize` (and the signature of its method callables),
    for CUDA device arrays. Each step runs two kernels (the gradient's infinity-norm, reduced
    on the device, and one fused pass of the rule's update with the bounds projection) and
    brings two scalars to the host: ``f`` and that norm.

    Parameters
    ----------
    rule : adamnb.optim.rules.UpdateRule or str
        The update rule, or a method name (``"adam"``, ...).
    fun : callable
        ``fun(x, *args)`` with ``x`` a numba device array of x0's dtype and length (not to be
        kept: ``x`` is updated in place). It returns ``f``, a number or a one-element device
        array; with ``jac=True`` it returns ``(f, g)`` with ``g`` a device array like ``x``.
    x0 : device array, shape (n,), float32 or float64
        A numba device array or any object with ``__cuda_array_interface__`` (CuPy array,
        CUDA torch tensor). Never modified: it is copied on the device first.
    args : tuple or iterator, optional
        Extra arguments of ``fun`` and ``jac``; an iterator (e.g. of device minibatches) gives
        every step its own, as in :func:`adamnb.minimize` (then ``gtol`` defaults to 0).
    jac : True or callable
        ``jac(x, *args)`` returns the gradient as a device array like ``x``. Finite differences
        ('2-point', '3-point', None) are not available on the device (ValueError).
    hess, hessp, constraints : optional
        Not used (a RuntimeWarning says so, as on the host).
    bounds : scipy.optimize.Bounds or sequence of (min, max), optional
        Box constraints, uploaded once; x0's copy is projected first, then every step is
        projected inside the fused update.
    callback : callable, optional
        ``callback(xk)`` with a device copy of the iterate, or ``callback(intermediate_result)``
        (an OptimizeResult with ``x``, a device copy, and ``fun``). ``StopIteration`` ends the
        run with status 99.
    **options
        As in :func:`adamnb.minimize`: ``lr`` (a number or a schedule), the rule's other
        hyperparameters, ``maxiter``, ``gtol`` (0 disables; with bounds, the projected
        gradient's), ``tol`` (sets gtol), ``disp``, ``return_all``. ``parallel`` and
        ``finite_diff_rel_step`` are accepted and have no effect. Unknown options warn with
        ``scipy.optimize.OptimizeWarning``.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``: the final iterate as a **numba device array** (``res.x.copy_to_host()`` brings it
        to the host; ``cupy.asarray(res.x)`` views it in CuPy); ``jac``: the gradient there, a
        device array of the result's own (a copy of what ``fun``/``jac`` returned); ``fun`` (a
        float), ``nit`` (update steps), ``nfev``, ``njev``, ``status``, ``success``,
        ``message``. Status 0: converged (gtol); 1: maxiter reached; 3: NaN or inf met in f or
        anywhere in g (the last finite iterate, its f and g are returned; ``nit`` counts the
        steps that made it, as in :func:`adamnb.minimize`); 99: the callback
        raised StopIteration. With
        ``return_all``, ``allvecs`` (host copies of the iterates) and ``fun_history``.

    Raises
    ------
    RuntimeError
        CUDA is unavailable.
    TypeError
        ``x0`` or a gradient is not a float32/float64 device array (e.g. a NumPy array).
    ValueError
        ``x0`` is empty, not 1-D or not finite; bad options; ``jac`` is not True or callable.

    Examples
    --------
    On a GPU (or in numba's simulator), a 1000-dimensional Rosenbrock from 0.5 everywhere::

        import numpy as np
        from numba import cuda
        from adamnb.problems import cuda_functions as cuda_objectives
        from adamnb.optimize._device import minimize_on_device

        d_x0 = cuda.to_device(np.full(1000, 0.5, np.float32))
        res = minimize_on_device("adam", cuda_objectives.rosenbrock, d_x0, jac=True,
                                 lr=1e-2, maxiter=5000)
        x = res.x.copy_to_host()
    """
    cuda_backend.require_available("minimize on device arrays")
    if isinstance(rule, str):
        rule = rules.get_rule(rule)
    warn_unused(rule, hess, hessp, constraints)
    run = prepare(rule, args, options)
    cuda = cuda_backend.numba_cuda()
    x0 = cuda_backend.check_device_vector(x0, "x0")
    if x0.size == 0:
        raise ValueError("'x0' is empty; it needs at least one parameter")
    objective = _DeviceObjective(fun, jac, x0)
    notify = wrap_callback(callback, copy=_device_copy)
    if not math.isfinite(cuda_backend.Reduction("max_abs", x0.dtype, THREADS_PER_BLOCK)(x0)):
        raise ValueError("'x0' must be finite; it holds NaN or inf")
    x = _device_copy(x0)
    dtype = np.dtype(x.dtype)
    bound_arrays = as_bounds(bounds, x.size, dtype)
    if bound_arrays is None:
        lower = upper = cuda.device_array(0, dtype)
    else:
        lower, upper = (cuda_backend.to_device(b) for b in bound_arrays)
        cuda_backend.project_vector(x, lower, upper, THREADS_PER_BLOCK)
    layout = run.bind(x.size)
    states = [(tuple(cuda_backend.to_device(a) for a in state) if isinstance(state, tuple)
               else cuda_backend.to_device(state), cuda_backend.to_device(carry))
              for state, carry in layout.new_states(dtype)]
    steps = DeviceSteps(layout, objective, x, lower, upper)
    g, spare = cuda.device_array_like(x), cuda.device_array_like(x)
    f, norm = steps.evaluate(x, run.next_args(), g)
    allvecs, fun_history = ([x.copy_to_host()], [f]) if run.record else (None, None)
    if not (math.isfinite(f) and math.isfinite(norm)):
        status, nit = 3, 0
    else:
        status, nit, f, g = iterate(run, steps, x, f, g, spare, norm, states, notify, allvecs,
                                    fun_history)
    return build_result(run, x, f, g, nit, objective.nfev, objective.njev, status, allvecs,
                        fun_history, state=states,
                        reevaluate=reevaluator(run, steps.evaluate_at, objective,
                                               cuda.device_array_like))
