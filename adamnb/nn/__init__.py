"""NumPy models on one flat parameter vector, their training loops, and MNIST.

* :mod:`adamnb.nn.models` -- :class:`MLP` and :class:`SoftmaxRegression`.
* :mod:`adamnb.nn.training` -- :func:`train` (explicit loop) and :func:`train_minimize` (through
  :func:`adamnb.minimize`), the same bits.
* :mod:`adamnb.nn.datasets` -- :func:`load_mnist`.
* :mod:`adamnb.nn.cuda_models` -- the MLP on a GPU (numba.cuda), imported on demand.
"""

from adamnb.nn import datasets, training
from adamnb.nn.datasets import load_mnist
from adamnb.nn.models import EVALUATION_CHUNK, MLP, SoftmaxRegression
from adamnb.nn.training import History, train, train_minimize

__all__ = ["MLP", "SoftmaxRegression", "EVALUATION_CHUNK", "train", "train_minimize", "History",
           "load_mnist", "datasets", "training"]
