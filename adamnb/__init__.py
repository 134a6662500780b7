"""adamnb: the Adam family of optimizers as Numba kernels, behind scipy.optimize.minimize's contract.

>>> import adamnb
>>> res = adamnb.minimize(fun, x0, method="adam", jac=grad, options={"lr": 1e-2})  # doctest: +SKIP
>>> opt = adamnb.Adam(lr=1e-3); opt.step(x, g)                                   # doctest: +SKIP

Public names: :func:`minimize`, :func:`show_options`, the method callables (``adamnb.adam``,
``adamnb.sgd``, ... usable as ``scipy.optimize.minimize(..., method=adamnb.adam)``), the optimizer
classes (:class:`Adam`, :class:`SGD`, ...), :mod:`adamnb.schedules`, :func:`minibatches` and the
test functions in :mod:`adamnb.functions`. Training on data: :mod:`adamnb.datasets` (MNIST),
:mod:`adamnb.nn` (softmax regression and MLPs on one flat parameter vector) and
:mod:`adamnb.training` (epoch loops with a per-epoch history).
"""

from adamnb import datasets, nn, schedules, training
from adamnb._batch import minimize_batch
from adamnb._minimize import METHOD_CALLABLES, METHODS, minimize, show_options
from adamnb.optimizers import (SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, Optimizer,
                               RAdam, RMSprop)
from adamnb.stochastic import minibatches

sgd = METHOD_CALLABLES["sgd"]
adagrad = METHOD_CALLABLES["adagrad"]
rmsprop = METHOD_CALLABLES["rmsprop"]
adadelta = METHOD_CALLABLES["adadelta"]
adam = METHOD_CALLABLES["adam"]
amsgrad = METHOD_CALLABLES["amsgrad"]
adamw = METHOD_CALLABLES["adamw"]
adamax = METHOD_CALLABLES["adamax"]
nadam = METHOD_CALLABLES["nadam"]
radam = METHOD_CALLABLES["radam"]

__version__ = "0.1.0"

__all__ = ["minimize", "minimize_batch", "show_options", "METHODS", "minibatches", "schedules",
           "datasets", "nn", "training", "Optimizer", "SGD",
           "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", *METHODS]
