"""The scipy-style drivers: what a scipy.optimize reader looks for.

* :func:`minimize` -- ``scipy.optimize.minimize``'s signature and result with adamnb's update
  rules; it dispatches to the host loop (Python callables), the compiled loop (numba-jitted
  objectives) or the device driver (CUDA arrays).
* :func:`minimize_batch` -- many independent starts of one jitted problem, in parallel.
* the method callables (``adamnb.adam`` ...), scipy custom methods:
  ``scipy.optimize.minimize(f, x0, method=adamnb.adam, jac=g)``.
* :func:`minibatches` -- an ``args`` stream of shuffled minibatches for stochastic objectives.
"""

from adamnb.optimize._batch import minimize_batch
from adamnb.optimize._minimize import METHOD_CALLABLES, METHODS, minimize, show_options
from adamnb.optimize.stochastic import minibatches

__all__ = ["minimize", "minimize_batch", "show_options", "METHODS", "METHOD_CALLABLES",
           "minibatches"]
