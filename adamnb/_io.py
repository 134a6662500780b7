"""Atomic file writes: the one place that knows how to replace a file without half-writing it."""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_options):
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A reader never sees a half-written file, an interrupted write leaves the previous file intact
    and no temporary file behind. The folder is created if needed. Yields the open stream
    (``mode`` "w" or "wb", plus ``open`` keywords such as ``encoding``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode, **open_options) as stream:
            yield stream
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
