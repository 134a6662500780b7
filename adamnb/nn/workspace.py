"""Scratch buffers that a model can share safely between threads.

A model's forward and backward passes write into buffers of the batch's size (activations,
deltas, per-row losses). Allocating them at every call would cost a page-faulting allocation per
step, and keeping one set on the model made concurrent calls overwrite each other's activations
(the kernels release the GIL). :class:`WorkspacePool` keeps *free* sets per batch size: a call
takes a set out of the pool for its duration (creating one when none is free) and puts it back at
the end, so each set is used by one call at a time. A single thread reuses one set per batch size
(nothing allocated after the first step); ``k`` threads calling at once create at most ``k``.
"""

import contextlib
import threading

__all__ = ["WorkspacePool"]


class WorkspacePool:
    """Free workspaces per key (e.g. the number of rows), handed out one call at a time.

    Parameters
    ----------
    create : callable
        ``create(key)`` returns a new workspace (any object) for ``key``.
    keep : int, default 4
        At most this many keys are kept; beyond it the least recently returned key's free
        workspaces are dropped (training sees two batch sizes: full batches and an epoch's last).
    """

    def __init__(self, create, keep=4):
        self._create, self._keep = create, int(keep)
        self._free = {}  # key -> list of idle workspaces; dict order = least recently returned first
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self, key):
        """``with pool.take(key) as workspace:`` a workspace no other call is using."""
        with self._lock:
            idle = self._free.get(key)
            workspace = idle.pop() if idle else None
        if workspace is None:
            workspace = self._create(key)
        try:
            yield workspace
        finally:
            with self._lock:
                self._free.setdefault(key, []).append(workspace)
                self._free[key] = self._free.pop(key)  # now the most recently returned key
                while len(self._free) > self._keep:
                    del self._free[next(iter(self._free))]

    def clear(self):
        """Drop every idle workspace."""
        with self._lock:
            self._free.clear()
