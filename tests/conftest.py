"""Suite-wide set-up for numba's CUDA simulator: a thread-safe shared-memory allocation, and a
short thread switch interval.

The simulator runs each block's threads as Python threads, and its ``cuda.shared.array`` looks the
array up in a per-block dict keyed by the calling line, allocating it on a miss, without a lock
(``numba/cuda/simulator/kernelapi.py``, ``FakeCUDAShared.array``). When the interpreter switches
threads between that lookup and the store, two threads of one block get different arrays, and a
block reduction silently loses one thread's value. It shows in a loaded CI run as a rare mismatch
in LAMB's or Prodigy's reductions (reproduced at ``sys.setswitchinterval(1e-6)``: 2 failures in 3
passes over the reduction rules' step-for-step test; 0 in 6 with the lock). On a GPU the array is
one per block by construction, so only the simulator needs this.

The simulator also runs each block's threads as Python threads, and its launcher polls them: at
Python's default 5 ms switch interval every ``syncthreads`` waits for several switches. A 0.5 ms
interval, for the whole session, makes the shared-memory kernels' tests several times faster; it
changes no result.
"""
import os
import sys
import threading
import traceback

import numpy as np
import pytest


def _thread_safe_simulator_shared_arrays():
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    original = kernelapi.FakeCUDAShared.array
    if getattr(original, "_adamnb_locked", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, *args, **kwargs):
        if shape == 0 or args or kwargs:  # dynamic shared memory, alignment: not looked up here
            return original(self, shape, dtype, *args, **kwargs)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]  # the simulator's key
        with lock:
            allocated = self._allocations.get(caller)
            if allocated is None:
                allocated = self._allocations[caller] = np.empty(shape, dtype)
        return allocated

    array._adamnb_locked = True
    kernelapi.FakeCUDAShared.array = array


if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    _thread_safe_simulator_shared_arrays()


@pytest.fixture(autouse=True, scope="session")
def _quick_simulator_threads():
    saved = sys.getswitchinterval()
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.setswitchinterval(5e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)
