"""NumPy models on one flat parameter vector, their training loops, and MNIST.

* :mod:`adamnb.nn.models` -- :class:`Sequential` (layers from :mod:`adamnb.nn.layers`),
  :class:`MLP`, :class:`SoftmaxRegression`, :func:`keras_mnist_cnn`.
* :mod:`adamnb.nn.layers` -- :class:`Dense`, :class:`Conv2D`, :class:`MaxPool2D`,
  :class:`Dropout`, :class:`Flatten` and their CPU passes.
* :mod:`adamnb.nn.elements` -- the dense layers' per-element math, written once for the CPU and
  the GPU.
* :mod:`adamnb.nn.training` -- :func:`train` (explicit loop) and :func:`train_minimize` (through
  :func:`adamnb.minimize`), the same bits.
* :mod:`adamnb.nn.datasets` -- :func:`load_mnist`.
* :mod:`adamnb.nn.cuda_models` -- the models on a GPU (numba.cuda), and
  :mod:`adamnb.nn.cuda_ops`, their device passes: loaded on first access
  (``adamnb.nn.cuda_models``), so that ``import adamnb.nn`` never loads numba.cuda.
"""

import importlib

from adamnb.nn import datasets, training
from adamnb.nn.datasets import load_mnist
from adamnb.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D
from adamnb.nn.models import (EVALUATION_CHUNK, MLP, Sequential, SoftmaxRegression,
                              keras_mnist_cnn)
from adamnb.nn.training import History, train, train_minimize

__all__ = ["Sequential", "MLP", "SoftmaxRegression", "keras_mnist_cnn", "Dense", "Conv2D",
           "MaxPool2D", "Dropout", "Flatten", "EVALUATION_CHUNK", "train", "train_minimize",
           "History", "load_mnist", "datasets", "training"]

#: Submodules loaded on first attribute access (they load numba.cuda).
_LAZY = ("cuda_models", "cuda_ops")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
