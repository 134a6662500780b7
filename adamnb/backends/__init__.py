"""Where the update rules run: jit options (the one place), CPU kernels, CUDA kernels and CUDA
support, counter-based random numbers.

Nothing here knows about scipy's conventions or about Python objects beyond arrays: the drivers
(:mod:`adamnb.optimize`) and the classes (:mod:`adamnb.optim`) call in.
"""
