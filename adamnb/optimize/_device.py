"""``minimize`` on CUDA device arrays: the iterate never leaves the GPU.

:func:`minimize_on_device` is the device twin of the Python path of
:func:`adamnb.optimize._minimize._minimize_rule`, with the same contract (arguments, options, status codes,
``scipy.optimize.OptimizeResult``). ``x0`` is a device array, ``fun`` and ``jac`` take a device
vector and return the gradient as a device array, and per step only two scalars cross the bus: the
objective value ``f`` (which ``fun`` returns as a host number) and the gradient's infinity-norm,
reduced on the device (:class:`adamnb.backends.cuda.Reduction`) for the gtol and finiteness tests.

Why this shape
    A step is two kernels: the norm reduction of ``g`` and one fused pass
    (:func:`adamnb.backends.cuda.cuda_fused_step`) that copies ``x`` into ``previous``, applies the rule's
    element and projects onto the bounds, so the step reads ``x, g`` and the state once and
    writes ``x``, the state and ``previous`` once. Keeping ``previous`` on the device is what lets
    status 3 return the last finite iterate without a host copy. The per-step scalars come from
    the same coefficient table, cast the same way, as every CPU driver's
    (:meth:`adamnb.optim.rules.UpdateRule.coefficient_table`), so a GPU run follows the CPU run step for
    step, up to the GPU's fused multiply-adds.

    The norm is taken after every evaluation, not before every step as on the CPU: a non-finite
    ``f`` or ``g`` ends the run at once (status 3, the previous iterate restored), before the
    callback sees the bad point. The result is the CPU's (same ``x``, ``nit`` and status); only
    the callback is called once less when the gradient, but not ``f``, turns non-finite.

What differs from the host driver
    * ``jac`` must be True or a callable returning device arrays: finite differences would call
      ``fun`` once per element, each with a host round trip, which is never what one wants on a
      GPU; they raise ValueError.
    * Bounds are supported (uploaded once, projection fused into the step).
    * ``fun`` must not overwrite, in place, a gradient it returned at the previous call: that one
      is returned as ``jac`` when the next evaluation is not finite. Alternate two buffers, as
      :mod:`adamnb.problems.cuda_functions` and :func:`adamnb.nn.training.train_minimize` do.
    * ``return_all`` copies every iterate to the host (``allvecs`` holds NumPy arrays); the
      options ``parallel`` and ``eps`` have no effect.
    * The callback receives a device copy of the iterate (``callback(xk)``), or an
      ``OptimizeResult`` whose ``x`` is one (``callback(intermediate_result)``).

``numba.cuda`` is imported only when the function runs.
"""

import collections.abc
import math
import warnings

import numpy as np
from scipy.optimize import OptimizeResult

from adamnb.backends import cpu as kernels
from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules
from adamnb.optim.schedules import as_schedule, schedule_values

__all__ = ["minimize_on_device"]

#: Threads per block of every launch here (tests patch in a tiny value to force many blocks).
THREADS_PER_BLOCK = cuda_backend.DEFAULT_THREADS_PER_BLOCK

_clip_kernels = {}
# numba.cuda once imported; reached through this module global (the simulator swaps it).
_numba_cuda = None


def _cuda():
    global _numba_cuda
    if _numba_cuda is None:
        _numba_cuda = cuda_backend._cuda()
    return _numba_cuda


def _clip_function():
    _cuda()

    def clip(x, lower, upper):
        for i in range(_numba_cuda.grid(1), x.size, _numba_cuda.gridsize(1)):
            value = x[i]
            if lower[i] > value:
                value = lower[i]
            if upper[i] < value:
                value = upper[i]
            x[i] = value

    return clip


def _clip_kernel():
    if "clip" not in _clip_kernels:
        _clip_kernels["clip"] = _cuda().jit(_clip_function())
    return _clip_kernels["clip"]


class _DeviceObjective:
    """``fun``/``jac`` behind one call ``(x, args) -> (f, g)``: f a float, g a device vector."""

    def __init__(self, fun, jac, x):
        if not (jac is True or callable(jac)):
            raise ValueError(f"jac={jac!r} is not available on device arrays: finite differences "
                             "would copy to the host once per element. Pass jac=True (fun "
                             "returns (f, g)) or a callable jac(x, *args), with g a device array")
        self.fun, self.jac = fun, jac
        self.shape, self.dtype = x.shape, x.dtype
        self.nfev = self.njev = 0

    @staticmethod
    def _scalar(value):
        if type(value) is float:
            return value
        if cuda_backend.is_device_array(value):
            value = cuda_backend.as_device_array(value, "the objective's value").copy_to_host()
        f = np.asarray(value)
        if f.size != 1 or f.ndim > 1 or f.dtype.kind not in "biuf":
            raise ValueError(f"The objective function must return a real scalar (a number or a "
                             f"one-element device array), got {value!r}")
        return float(f.reshape(()))

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


class _Coefficients:
    """The per-step scalars of one run, from the rule's coefficient table a block at a time.

    The table is :meth:`adamnb.optim.rules.UpdateRule.coefficient_table`, which every driver uses, and
    each row is rounded once to x's dtype (:func:`adamnb.backends.cpu.cast_coefficients`), so the
    scalars are the CPU drivers' bits.
    """

    BLOCK = 512

    def __init__(self, rule, options, schedule, maxiter, dtype):
        self.rule, self.options, self.schedule, self.maxiter = rule, options, schedule, maxiter
        self.dtype = dtype
        self.scalars = dict(rule.scalar_state)
        self.first, self.table = 1, None

    def step(self, t):
        """The coefficient tuple of step ``t`` (steps are asked for in order)."""
        if self.table is None or t - self.first >= self.table.shape[0]:
            steps = np.arange(t, min(t + self.BLOCK, self.maxiter + 1), dtype=np.int64)
            self.table, self.scalars = self.rule.coefficient_table(
                self.options, steps, schedule_values(self.schedule, steps), self.scalars)
            self.first = t
        return kernels.cast_coefficients(self.table[t - self.first], self.dtype)


def _device_copy(x):
    copy = _cuda().device_array(x.shape, x.dtype)
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
        ``lr`` (a number or a schedule of :mod:`adamnb.optim.schedules`), the rule's other
        hyperparameters, ``maxiter`` (update steps, default 1000), ``gtol`` (default 1e-5; 0
        disables), ``tol`` (sets gtol), ``disp``, ``return_all``. ``parallel`` and ``eps`` are
        accepted and ignored. Unknown options warn with ``scipy.optimize.OptimizeWarning``.

    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``: the final iterate as a **numba device array** (``res.x.copy_to_host()`` brings it
        to the host; ``cupy.asarray(res.x)`` views it in CuPy); ``jac``: the gradient there, the
        device array ``fun``/``jac`` returned; ``fun`` (a float), ``nit`` (update steps),
        ``nfev``, ``njev``, ``status``, ``success``, ``message``. Status 0: the gradient's
        infinity-norm is at most gtol; 1: maxiter reached; 3: NaN or inf met in f or g (the last
        finite iterate, its f and g are returned); 99: the callback raised StopIteration. With
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
    from adamnb.optimize import _minimize as host

    cuda_backend.require_available("minimize on device arrays")
    if isinstance(rule, str):
        rule = rules.get_rule(rule)
    for name, given in (("hess", hess), ("hessp", hessp)):
        if given is not None:
            warnings.warn(f"Method {rule.name} does not use Hessian information ({name}).",
                          RuntimeWarning, stacklevel=host._caller_stacklevel())
    if constraints is not None and np.any(constraints):
        warnings.warn(f"Method {rule.name} cannot handle constraints.", RuntimeWarning,
                      stacklevel=host._caller_stacklevel())
    stochastic = isinstance(args, collections.abc.Iterator)
    if not stochastic and not isinstance(args, tuple):
        args = (args,)
    driver, hyperparameters = host._split_options(rule, options)
    if "tol" in options and "gtol" not in options and options["tol"] is not None:
        driver["gtol"] = options["tol"]
    elif stochastic and "gtol" not in options:
        driver["gtol"] = 0.0
    host._check_driver_options(driver)
    hp = rule.validate(hyperparameters)
    schedule = as_schedule(hp["lr"])

    cuda = _cuda()
    x0 = cuda_backend.check_device_vector(x0, "x0")
    if x0.size == 0:
        raise ValueError("'x0' is empty; it needs at least one parameter")
    objective = _DeviceObjective(fun, jac, x0)
    notify = host._wrap_callback(callback, copy=_device_copy)  # device copies of x
    tpb = int(THREADS_PER_BLOCK)
    blocks = cuda_backend.launch_blocks(x0.size, tpb)
    infinity_norm = cuda_backend.Reduction("max_abs", x0.dtype, tpb)
    if not math.isfinite(infinity_norm(x0)):
        raise ValueError("'x0' must be finite; it holds NaN or inf")
    x = _device_copy(x0)
    dtype = np.dtype(x.dtype)
    bound_arrays = host._as_bounds(bounds, x.size, dtype)
    if bound_arrays is None:
        lower = upper = cuda.device_array(0, dtype)
    else:
        lower, upper = (cuda_backend.to_device(b) for b in bound_arrays)
        _clip_kernel()[blocks, tpb](x, lower, upper)
    state = cuda_backend.to_device(rule.state_vectors(hp, x.size, dtype))
    previous = cuda.device_array_like(x)
    fused = cuda_backend.cuda_fused_step(rule)
    coefficients = _Coefficients(rule, hp, schedule, int(driver["maxiter"]), dtype)
    gtol = float(driver["gtol"])
    record = bool(driver["return_all"])

    def next_batch():
        try:
            return tuple(next(args))
        except StopIteration:
            raise ValueError("the args iterator was exhausted before maxiter steps; use an "
                             "endless iterator") from None

    step_args = next_batch() if stochastic else args
    f, g = objective(x, step_args)
    norm = infinity_norm(g)
    allvecs, fun_history = ([x.copy_to_host()], [f]) if record else ([], [])
    nit = 0
    if not (math.isfinite(f) and math.isfinite(norm)):
        status = 3
    else:
        while True:
            t = nit + 1
            if t > coefficients.maxiter or (gtol > 0 and norm <= gtol):
                status = 0 if gtol > 0 and norm <= gtol else 1
                break
            c = coefficients.step(t)
            fused[blocks, tpb](x, g, state, c, previous, lower, upper)
            f_previous, g_previous = f, g
            nit = t
            if stochastic:
                step_args = next_batch()
            f, g = objective(x, step_args)
            norm = infinity_norm(g)
            if not (math.isfinite(f) and math.isfinite(norm)):
                x.copy_to_device(previous)
                status, f, g = 3, f_previous, g_previous
                break
            if record:
                allvecs.append(x.copy_to_host())
                fun_history.append(f)
            if notify is not None:
                try:
                    notify(x, f)
                except StopIteration:
                    status = 99
                    break

    result = OptimizeResult(x=x, fun=f, jac=g, nit=nit, nfev=objective.nfev,
                            njev=objective.njev, status=status, success=status == 0,
                            message=host.STATUS_MESSAGES[status])
    if record:
        result.allvecs = allvecs
        result.fun_history = np.array(fun_history)
    if driver["disp"]:
        head = ("Optimization terminated successfully." if status == 0
                else "Warning: " + result.message)
        print(f"{head}\n"
              f"         Current function value: {f:.6g}\n"
              f"         Iterations: {nit}\n"
              f"         Function evaluations: {objective.nfev}\n"
              f"         Gradient evaluations: {objective.njev}")
    return result
