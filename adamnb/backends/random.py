"""Counter-based random numbers for dropout: the same bits on one thread, many threads or a GPU.

A dropout mask must not depend on how the work is split. A sequential generator (NumPy's) would
give each thread a different stream; here the ``i``-th number of a stream is a pure function of
the stream's 64-bit ``key`` and of ``i``, the SplitMix64 finaliser (Steele, Lea & Flood 2014) of
``key + (i + 1) * golden``. The element function :func:`uniform_at` is plain Python marked with
:func:`adamnb.backends.jit.elementwise`, so CPU kernels inline it and the CUDA kernels compile the same
source with ``cuda.jit(device=True)``: one definition, identical masks on every backend.

:func:`stream_key` derives a stream's key on the host from a seed and two counters (e.g. the
training step and the layer), so every minibatch and every layer gets its own stream, and the same
seed reproduces the run.
"""

import numpy as np

from adamnb.backends.jit import elementwise

__all__ = ["uniform_at", "stream_key", "splitmix64"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

# uint64 constants: numba (and NumPy) promote a uint64 mixed with a signed integer to float64.
GOLDEN = np.uint64(_GOLDEN)
MIX1 = np.uint64(_MIX1)
MIX2 = np.uint64(_MIX2)
SHIFT30, SHIFT27, SHIFT31, SHIFT40 = (np.uint64(s) for s in (30, 27, 31, 40))
ONE = np.uint64(1)
# 2**-24 as float32: the top 24 bits of the hash are exactly representable in float32.
INV_2_24 = np.float32(2.0 ** -24)


@elementwise
def uniform_at(key, i):
    """The ``i``-th float32 of stream ``key``, uniform on [0, 1) with 24 random bits."""
    z = key + (np.uint64(i) + ONE) * GOLDEN
    z = (z ^ (z >> SHIFT30)) * MIX1
    z = (z ^ (z >> SHIFT27)) * MIX2
    z = z ^ (z >> SHIFT31)
    return np.float32(z >> SHIFT40) * INV_2_24


def splitmix64(value):
    """SplitMix64's finaliser of ``value + golden`` on Python integers (host side)."""
    z = (int(value) + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def stream_key(seed, *counters):
    """The key (a ``numpy.uint64``) of the stream named by ``seed`` and the ``counters``.

    Each counter is folded in with a round of SplitMix64, so ``(seed, 3, 1)`` and ``(seed, 1, 3)``
    name unrelated streams.
    """
    if seed is None:
        raise ValueError("stream_key needs an integer seed")
    key = splitmix64(int(seed) & _MASK64)
    for counter in counters:
        key = splitmix64(key ^ (int(counter) & _MASK64))
    return np.uint64(key)
