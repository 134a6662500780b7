"""Files: the one place that knows how to replace a file without half-writing it, and how to check
that an output can be written before any work is spent on it."""

import contextlib
import itertools
import os
from pathlib import Path

__all__ = ["atomic_write", "check_output_folder", "check_output_file", "OutputError"]

_counter = itertools.count()


class OutputError(ValueError):
    """An output path that cannot be written: the message names the path and the reason."""


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_options):
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A reader never sees a half-written file; an interrupted write (an exception, Ctrl-C at any
    point) leaves the previous file intact and no temporary file behind. The folder is created
    if needed.

    Parameters
    ----------
    path : str or Path
        The file to write.
    mode : str
        ``open``'s mode for writing: "w", "wb", or "w+b" to read back what was written.
    **open_options
        Passed to :func:`open` (``encoding``, ...).

    Yields
    ------
    file object
        The open temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The name is fixed before the file exists, so that the cleanup below knows it whatever
    # instant an interrupt arrives at (mkstemp returns the name only after creating the file).
    temporary = path.parent / f".{path.name}.{os.getpid()}.{next(_counter)}.tmp"
    try:
        # O_RDWR: modes such as "w+b" read back what they wrote; O_EXCL: never follow or reuse a
        # file someone else made; 0o666 & ~umask: the permissions a plain open() would give.
        descriptor = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, mode, **open_options) as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _nearest_existing(path):
    """The path itself or its nearest ancestor that exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def check_output_folder(path, what="output folder"):
    """Raise :class:`OutputError` unless files can be created in folder ``path``.

    Checked before any work starts, so that an unusable output is reported at once rather than
    after hours of computing: ``path`` must be a folder or not exist yet, every existing part of
    it must be a folder, and the deepest existing one writable. Nothing is created.

    Parameters
    ----------
    path : str or Path
    what : str
        How the message names the path (e.g. ``"--out"``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        Naming the path and what is wrong with it.
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        if existing == path:
            raise OutputError(f"{what} {path} is a file, not a folder")
        raise OutputError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path} is not writable: no write permission in {existing}")
    return path


def check_output_file(path, what="output file", suffixes=None):
    """Raise :class:`OutputError` unless file ``path`` can be written (see
    :func:`check_output_folder`); ``suffixes``, if given, are the accepted extensions."""
    path = Path(path)
    if path.is_dir():
        example = "png" if not suffixes or "png" in suffixes else sorted(suffixes)[0]
        raise OutputError(f"{what} {path} is a folder; give a file name such as "
                          f"{path / ('out.' + example)}")
    if suffixes is not None:
        suffix = path.suffix.lstrip(".").lower()
        if suffix not in suffixes:
            raise OutputError(f"{what} {path}: unsupported file type {path.suffix or '(none)'!r}; "
                              f"use one of: {', '.join('.' + s for s in sorted(suffixes))}")
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path} is not writable")
    check_output_folder(path.parent, what=f"{what} {path}: folder")
    return path
