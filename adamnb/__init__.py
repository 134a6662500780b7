"""adamnb: the Adam family of optimizers as Numba kernels, behind scipy.optimize.minimize's contract.

>>> import adamnb
>>> res = adamnb.minimize(fun, x0, method="adam", jac=grad, options={"lr": 1e-2})  # doctest: +SKIP
>>> opt = adamnb.Adam(lr=1e-3); opt.step(x, g)                                   # doctest: +SKIP

The package, by what a reader looks for:

* :mod:`adamnb.optim` -- update rules, optimizer classes (:class:`Adam`, :class:`SGD`, ...),
  learning-rate schedules (torch.optim's side).
* :mod:`adamnb.optimize` -- :func:`minimize`, :func:`minimize_batch`, :func:`show_options`, the
  method callables (``adamnb.adam`` ..., usable as ``scipy.optimize.minimize(...,
  method=adamnb.adam)``) and :func:`minibatches` (scipy.optimize's side).
* :mod:`adamnb.backends` -- jit options, CPU and CUDA kernels, counter-based random numbers.
* :mod:`adamnb.problems` -- classic test functions (``adamnb.functions`` for short) and their
  CUDA versions.
* :mod:`adamnb.nn` -- NumPy models on one flat parameter vector, training loops, MNIST
  (``adamnb.datasets``, ``adamnb.training`` for short).
* :mod:`adamnb.sweep` (many runs on local processes or a Dask cluster), :mod:`adamnb.plot`,
  :mod:`adamnb.cli`, :mod:`adamnb.experiments`.

The subpackages load on first use (PEP 562), so ``import adamnb`` stays light and
``adamnb.functions.rosenbrock`` works without importing anything else first.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

from adamnb.optim import OPTIMIZERS, Optimizer
from adamnb.optimize import (METHOD_CALLABLES, METHODS, minibatches, minimize, minimize_batch,
                             show_options)

try:
    __version__ = version("adamnb")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

# From the rule registry: one optimizer class per rule (adamnb.Adam, ...) and one scipy custom
# method per method name (adamnb.adam, ...).
globals().update({cls.__name__: cls for cls in OPTIMIZERS.values()})
globals().update(METHOD_CALLABLES)

#: Public submodules loaded on first attribute access, and the short names kept for them.
_LAZY = {
    "optim": "adamnb.optim", "optimize": "adamnb.optimize", "backends": "adamnb.backends",
    "problems": "adamnb.problems", "nn": "adamnb.nn", "plot": "adamnb.plot", "cli": "adamnb.cli",
    "experiments": "adamnb.experiments", "sweep": "adamnb.sweep",
    "functions": "adamnb.problems.functions", "schedules": "adamnb.optim.schedules",
    "datasets": "adamnb.nn.datasets", "training": "adamnb.nn.training",
}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'adamnb' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["minimize", "minimize_batch", "show_options", "METHODS", "minibatches", "Optimizer",
           *(cls.__name__ for cls in OPTIMIZERS.values()), *METHODS, *_LAZY]
