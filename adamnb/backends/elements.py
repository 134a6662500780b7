"""Per-element pieces every driver's kernels share, written once for the CPU and CUDA targets.

Like the update rules' elements (:mod:`adamnb.optim.rules`), these are plain Python functions,
marked with :func:`adamnb.backends.jit.elementwise` so that numba compiles them inline into the
CPU loops; :mod:`adamnb.backends.cuda` compiles the same source as CUDA device functions.

* :func:`project` -- the bounds projection, ``min(max(x, lower), upper)``.
* :func:`fused_update` -- one driver step of one element: save the previous value (the last
  finite iterate, returned on status 3), apply the rule's element, project onto the bounds. The
  host loop's kernels, the compiled loop, the batched loop and the CUDA fused step all call it.
* :func:`maximum`, :func:`minimum` -- ``max(a, b)`` and ``min(a, b)`` with Python's semantics
  (``a`` unless ``b > a``, resp. ``b < a``: a NaN in ``a`` stays, a NaN in ``b`` is ignored,
  ``max(-0.0, 0.0)`` is ``-0.0``), each written as one comparison and one select. numba's
  builtins give the same values, but the loops that call them in a branch (AMSGrad's running
  maximum, AdaMax's infinity norm, ADOPT's clipping, Rprop's step-size bounds) are not vectorised
  by LLVM, which made those serial kernels 3 to 8 times slower than a streaming kernel moving
  the same bytes (``benchmarks/bench_update.py``); the select form is, and it compiles on every
  target (numba 0.68's built-in CUDA target cannot compile the two-argument builtins).
* :func:`lerp` -- torch's ``lerp``: ``start + w (end - start)`` when ``|w| < 0.5``, else
  ``end - (end - start)(1 - w)`` (each form exact at its end), as Adafactor's second moments and
  Muon's momentum use it.
* :func:`torch_gradient` -- torch.optim's first two steps of most of its rules: ``maximize``
  negates the gradient, then the L2 penalty ``weight_decay * x`` joins it.
* :func:`adam_moments` -- Adam's two moments as torch updates them (``exp_avg`` by ``lerp``,
  ``exp_avg_sq`` by ``mul_(beta2).addcmul_(g, g, 1 - beta2)``), shared by Adam, AdamW, NAdam and
  RAdam.
* :func:`stationarity` -- one element's contribution to the convergence measure: ``|g_i|``
  without bounds, ``|P(x_i - g_i) - x_i|`` with bounds (the projected gradient of L-BFGS-B's
  ``pgtol`` test, zero at a bound the gradient pushes against), and NaN when ``g_i`` is NaN or
  infinite, so that the infinity-norm built from it (:func:`fold_max`) is NaN whenever any
  element of the gradient is not finite, wherever that element is.
"""

from adamnb.backends.jit import elementwise

__all__ = ["project", "maximum", "minimum", "lerp", "torch_gradient", "adam_moments",
           "fused_update", "stationarity", "fold_max"]


@elementwise
def project(value, lower, upper):
    # Written with comparisons rather than min/max: the same source compiles on every numba
    # target (numba 0.68's built-in CUDA target cannot compile two-argument max), with Python's
    # semantics: a NaN value stays NaN.
    if lower > value:
        value = lower
    if upper < value:
        value = upper
    return value


@elementwise
def maximum(a, b):
    if b > a:
        return b
    return a


@elementwise
def minimum(a, b):
    if b < a:
        return b
    return a


@elementwise
def lerp(start, end, weight, one_minus_weight, weight_small):
    # torch's two forms, chosen by the weight (weight_small: |weight| < 0.5), each exact at its end
    if weight_small != 0:
        return start + weight * (end - start)
    return end - (end - start) * one_minus_weight


@elementwise
def torch_gradient(x, g, maximize, weight_decay):
    # maximize is 0 or 1 and weight_decay 0 where unused: the result is then g's bits
    if maximize != 0:
        g = -g
    return g + weight_decay * x


@elementwise
def adam_moments(g, state, i, one_minus_beta1, beta2, one_minus_beta2):
    # rows 0 and 1 of the state: torch's exp_avg.lerp_(g, 1 - beta1) (|w| < 0.5: start + w (end -
    # start)) and exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2), in its order
    m = state[0, i] + one_minus_beta1 * (g - state[0, i])
    v = beta2 * state[1, i] + one_minus_beta2 * g * g
    state[0, i] = m
    state[1, i] = v
    return m, v


def fused_update(element, project_element):
    """The fused per-element step around a rule's ``element``, for one target.

    ``element`` and ``project_element`` are the target's versions (the plain functions for the
    CPU, device functions for CUDA). The returned function
    ``update(x, g, state, i, c, previous, lower, upper, bounded)`` stores ``x[i]`` in
    ``previous[i]`` and returns the projected new value of ``x[i]`` (the caller stores it).
    """
    def update(x, g, state, i, c, previous, lower, upper, bounded):
        value = x[i]
        previous[i] = value
        value = element(value, g[i], state, i, c)
        if bounded:
            value = project_element(value, lower[i], upper[i])
        return value

    return update


@elementwise
def stationarity(x, g, lower, upper, bounded):
    # g - g is 0 for a finite g and NaN for NaN or +-inf: one test for both, in g's dtype.
    if g - g != 0:
        return g - g
    if bounded:
        return abs(project(x - g, lower, upper) - x)
    return abs(g)


@elementwise
def fold_max(norm, value):
    # A NaN, once in, stays: `value > NaN` and `value != value` are both false for a number.
    if value > norm or value != value:
        return value
    return norm
