"""MNIST: reading, caching and downloading the four standard IDX files.

>>> from adamnb.nn.datasets import load_mnist
>>> data = load_mnist()                                  # doctest: +SKIP
>>> data.X_train.shape, data.X_train.dtype, data.y_train[:5]  # doctest: +SKIP
((60000, 784), dtype('float32'), array([5, 0, 4, 1, 9]))

:func:`load_mnist` looks for the files in one directory, chosen in this order:

1. the ``data_dir`` argument, when given;
2. else the environment variable ``ADAMNB_DATA``, when set and not empty;
3. else the per-user cache directory ``pooch.os_cache("adamnb") / "mnist"``
   (``~/.cache/adamnb/mnist`` on Linux).

Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or not
(``train-images-idx3-ubyte``); when both are present the uncompressed one is read. Missing files are
downloaded from public mirrors (unless ``download=False``) and kept compressed. A download is
accepted only when the SHA-256 of its *decompressed* content matches :data:`SHA256` (mirrors
recompress the ``.gz`` files, so the compressed bytes differ between them); it is written to a
temporary name beside the target and renamed into place only once verified, so an interrupted or
rejected download leaves nothing behind. Every load checks each file's structure (IDX header,
dimensions, sizes, label range, gzip CRC); a damaged local file is reported, never replaced behind
the user's back.

Every problem is a :class:`DatasetError` (a subclass of :class:`OSError`) whose message names the
file, what is wrong with it and how to put the files in place by hand.

The MNIST database of handwritten digits is by Yann LeCun, Corinna Cortes and Christopher J. C.
Burges (http://yann.lecun.com/exdb/mnist/), distributed under the Creative Commons
Attribution-Share Alike 3.0 license (CC BY-SA 3.0). Cite it as: Y. LeCun, L. Bottou, Y. Bengio and
P. Haffner, "Gradient-based learning applied to document recognition", Proceedings of the IEEE,
86(11):2278-2324, 1998.
"""

import gzip
import hashlib
import math
import os
import sys
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from adamnb._io import atomic_write

__all__ = ["MNIST", "DatasetError", "load_mnist", "read_idx", "MIRRORS", "SHA256", "SPLIT_SIZES"]

#: SHA-256 of each file's decompressed content. The one table of trusted checksums: a download is
#: kept only if it matches (tests substitute their own synthetic files' checksums).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Number of examples each split's files must declare (tests substitute small synthetic sizes).
SPLIT_SIZES = {"train": 60000, "test": 10000}

#: Public mirrors of the ``.gz`` files, tried in order (yann.lecun.com itself now refuses most
#: automated downloads).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

IMAGE_SHAPE = (28, 28)
IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ENVIRONMENT_VARIABLE = "ADAMNB_DATA"
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_TIMEOUT = 30  # seconds without a byte before a mirror counts as failed


class DatasetError(OSError):
    """A data file is missing, damaged or could not be downloaded.

    The message names the file, says what is wrong and how to fix it. The offending path, where
    there is one, is in :attr:`path` (``OSError.filename`` is left unset so that ``str(error)`` is
    the message alone).
    """

    def __init__(self, message, path=None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class MNIST(NamedTuple):
    """The MNIST training and test sets, as returned by :func:`load_mnist`."""

    X_train: np.ndarray
    """Training images, float32 in [0, 1], shape (60000, 784) or (60000, 28, 28)."""
    y_train: np.ndarray
    """Training labels, int64 in 0..9, shape (60000,)."""
    X_test: np.ndarray
    """Test images, float32 in [0, 1], shape (10000, 784) or (10000, 28, 28)."""
    y_test: np.ndarray
    """Test labels, int64 in 0..9, shape (10000,)."""


def read_idx(path):
    """Read an IDX file of unsigned bytes into a NumPy array.

    IDX is the format of the MNIST files: a 4-byte magic number (two zero bytes, the data type
    code, the number of dimensions), one big-endian 32-bit size per dimension, then the data in
    C order. Only the unsigned-byte type (code ``0x08``), which MNIST uses, is supported.

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz`` is decompressed on the fly, and read to its end so that
        gzip's CRC and length checks run.

    Returns
    -------
    numpy.ndarray
        A new, writable ``uint8`` array with the shape the header declares, e.g. (60000, 28, 28)
        for ``train-images-idx3-ubyte``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DatasetError
        If the file cannot be read (no permission, a directory, an I/O error) or is not a
        well-formed IDX file of unsigned bytes: bad magic number, header or payload shorter or
        longer than declared, or (for ``.gz``) damaged compressed data.

    Examples
    --------
    >>> labels = read_idx("train-labels-idx1-ubyte.gz")    # doctest: +SKIP
    >>> labels.shape, labels.dtype
    ((60000,), dtype('uint8'))
    """
    return _read_idx(path).copy()


def _read_idx(path):
    """:func:`read_idx` without the final copy: the array may be a read-only view of the bytes."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        stream = opener(path, "rb")
    except FileNotFoundError:
        raise
    except OSError as error:  # no permission, a directory in place of the file, ...
        raise DatasetError(f"{path}: cannot read it ({error.strerror or error})", path) from error
    try:
        with stream:
            magic = stream.read(4)
            if len(magic) < 4:
                raise DatasetError(f"{path}: file is {len(magic)} bytes long, too short for an IDX "
                                   "header", path)
            if magic[:2] != b"\0\0" or magic[2] != 0x08 or magic[3] == 0:
                raise DatasetError(
                    f"{path}: not an IDX file of unsigned bytes (magic number "
                    f"{int.from_bytes(magic, 'big')} = 0x{magic.hex()}; expected 0x000008NN, e.g. "
                    f"{IMAGES_MAGIC} for images, {LABELS_MAGIC} for labels)", path)
            ndim = magic[3]
            sizes = stream.read(4 * ndim)
            if len(sizes) < 4 * ndim:
                raise DatasetError(f"{path}: header truncated (declares {ndim} dimensions but "
                                   f"holds {len(sizes) // 4} sizes)", path)
            shape = tuple(int(size) for size in np.frombuffer(sizes, ">u4"))
            # Read to the end, whatever the header says: a damaged header must not make us
            # allocate gigabytes, and for gzip only the end of the stream checks the CRC.
            payload = stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: damaged or truncated gzip data ({error})", path) from None
    except OSError as error:  # e.g. an I/O error in the middle of the file
        raise DatasetError(f"{path}: cannot read it ({error.strerror or error})", path) from error
    # Python integers: a product of the 32-bit sizes in int64 could wrap around to the length
    # of a short payload and pass.
    expected = math.prod(shape)
    if len(payload) != expected:
        declared = " x ".join(map(str, shape))
        problem = "truncated" if len(payload) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {problem}: the header declares {declared} = {expected} bytes "
                           f"of data but the file holds {len(payload)}", path)
    return np.frombuffer(payload, np.uint8).reshape(shape)


def load_mnist(data_dir=None, *, download=True, flatten=True, mirrors=None):
    """Load MNIST, downloading the files once if they are not there yet.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Directory holding (or to receive) the four files ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``,
        each with or without ``.gz``. Default: the environment variable ``ADAMNB_DATA`` if set and
        not empty, else the per-user cache directory ``pooch.os_cache("adamnb") / "mnist"``.
    download : bool, default True
        Download the missing files (only those) into the directory, creating it if needed. With
        False, a missing file raises :class:`DatasetError`.
    flatten : bool, default True
        Images as rows of 784 pixels, shape (n, 784); with False, shape (n, 28, 28).
    mirrors : sequence of str, optional
        Base URLs to download from, tried in order for each file (the file name plus ``.gz`` is
        appended). Default: :data:`MIRRORS`.

    Returns
    -------
    MNIST
        Named tuple ``(X_train, y_train, X_test, y_test)``: images as float32 in [0, 1] (the bytes
        divided by 255), labels as int64 in 0..9; 60000 training and 10000 test examples.

    Raises
    ------
    DatasetError
        A file is missing and ``download`` is False; every mirror failed for a file (the message
        lists each URL tried and why it failed); the data directory is not a directory, cannot be
        searched or cannot be created; a local file cannot be read; or a local file is damaged
        (wrong magic number, dimensions, example count or size, labels outside 0..9, bad gzip
        data), the message naming the file in fault. A damaged file is never re-downloaded
        automatically: delete it and call again.

    Notes
    -----
    Downloads are verified against the SHA-256 of the decompressed content (:data:`SHA256`) and
    written atomically: a temporary file in the same directory, renamed into place once verified,
    deleted otherwise. A progress bar is shown on stderr when stderr is a terminal.

    The dataset is by Y. LeCun, C. Cortes and C. J. C. Burges, under CC BY-SA 3.0.

    Examples
    --------
    >>> X_train, y_train, X_test, y_test = load_mnist()       # doctest: +SKIP
    >>> X_train.shape, y_test[:3]
    ((60000, 784), array([7, 2, 1]))
    """
    directory = _resolve_data_dir(data_dir)
    if _inspect(directory, directory.exists) and not directory.is_dir():
        raise DatasetError(f"the MNIST data directory {directory} is not a directory. "
                           f"{_placement_hint(directory)}", directory)
    names = [name for pair in _SPLIT_FILES.values() for name in pair]
    missing = [name for name in names if _locate(directory, name) is None]
    if missing:
        if not download:
            listed = ", ".join(missing)
            raise DatasetError(f"MNIST file(s) not found in {directory}: {listed} (with or "
                               f"without .gz). Call load_mnist with download=True to fetch them. "
                               f"{_placement_hint(directory)}",
                               directory / missing[0])
        if mirrors is None:
            mirrors = MIRRORS
        elif isinstance(mirrors, str):
            mirrors = [mirrors]  # one URL, not a sequence of characters
        mirrors = [str(mirror) for mirror in mirrors]
        if not mirrors:
            raise DatasetError(f"MNIST file(s) {', '.join(missing)} missing from {directory} and "
                               f"no mirror to download them from (mirrors is empty). "
                               f"{_placement_hint(directory)}", directory / missing[0])
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatasetError(f"cannot create the data directory {directory} "
                               f"({error.strerror or error}). {_placement_hint(directory)}",
                               directory) from error
        for name in missing:
            _download(name, directory, mirrors)

    arrays = []
    for split, (images_name, labels_name) in _SPLIT_FILES.items():
        images_path, labels_path = _locate(directory, images_name), _locate(directory, labels_name)
        images = _load_checked(images_path, IMAGES_MAGIC, directory)
        labels = _load_checked(labels_path, LABELS_MAGIC, directory)
        if images.shape[1:] != IMAGE_SHAPE:
            raise _corrupt(images_path, f"images are {images.shape[1]} x {images.shape[2]} "
                           f"pixels, expected {IMAGE_SHAPE[0]} x {IMAGE_SHAPE[1]}", directory)
        if len(images) != len(labels):
            # Blame the file that disagrees with the split's size, not always the images.
            if len(images) == SPLIT_SIZES[split]:
                raise _corrupt(labels_path, f"it holds {len(labels)} labels but {images_path} "
                               f"holds {len(images)} images", directory)
            raise _corrupt(images_path, f"it holds {len(images)} images but {labels_path} "
                           f"holds {len(labels)} labels", directory)
        for path, count in ((images_path, len(images)), (labels_path, len(labels))):
            if count != SPLIT_SIZES[split]:
                raise _corrupt(path, f"it declares {count} examples, the MNIST {split} set has "
                               f"{SPLIT_SIZES[split]}", directory)
        if labels.size and labels.max() > 9:
            first = int(np.argmax(labels > 9))
            raise _corrupt(labels_path, f"label {labels[first]} at index {first} is outside "
                           "0..9", directory)
        pixels = images.astype(np.float32)
        pixels /= np.float32(255)  # in float32: correctly rounded k/255, no float64 temporary
        arrays += [pixels.reshape(len(pixels), -1) if flatten else pixels,
                   labels.astype(np.int64)]
    return MNIST(*arrays)


def _resolve_data_dir(data_dir):
    """The directory to use: the argument, else ``$ADAMNB_DATA``, else the user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_environment = os.environ.get(_ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment).expanduser()
    return _cache_dir()


def _cache_dir():
    """The per-user cache directory for MNIST (imports pooch, so only called when needed)."""
    import pooch

    return Path(pooch.os_cache("adamnb")).expanduser() / "mnist"


def _locate(directory, name):
    """The file ``name`` or ``name.gz`` in ``directory`` (uncompressed first), or None."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if _inspect(directory, candidate.is_file):
            return candidate
    return None


def _inspect(directory, test):
    """``test()``, a ``Path`` query, with an OSError (e.g. no permission to search
    ``directory``) turned into a :class:`DatasetError`."""
    try:
        return test()
    except OSError as error:
        raise DatasetError(f"cannot look into the data directory {directory} "
                           f"({error.strerror or error}). {_placement_hint(directory)}",
                           directory) from error


def _placement_hint(directory):
    names = ", ".join(name for pair in _SPLIT_FILES.values() for name in pair)
    return (f"To install MNIST by hand, put the four files {names} (each with or without .gz) "
            f"into {directory}, or set the environment variable {_ENVIRONMENT_VARIABLE} to the "
            "directory that holds them.")


def _corrupt(path, problem, directory):
    return DatasetError(f"{path} is not a valid MNIST file: {problem}. Delete it and call "
                        f"load_mnist() again to download a fresh copy (a damaged file is never "
                        f"replaced automatically). {_placement_hint(directory)}", path)


def _load_checked(path, magic, directory):
    """Read an MNIST file and check its magic number; errors say how to replace the file."""
    try:
        array = _read_idx(path)
    except FileNotFoundError as error:  # removed since it was found
        raise _corrupt(path, f"it disappeared while being read ({error.strerror})",
                       directory) from None
    except DatasetError as error:
        # read_idx names the file and the fault; add the remedy, which only the loader knows.
        problem = str(error).removeprefix(f"{path}: ")
        raise _corrupt(path, problem, directory) from None
    found = 0x0800 + array.ndim
    if found != magic:
        raise _corrupt(path, f"magic number {found}, expected {magic} "
                       f"({'images' if magic == IMAGES_MAGIC else 'labels'})", directory)
    return array


def _content_sha256(stream):
    """SHA-256 of the decompressed content of an open gzip stream (reads it to the end)."""
    digest = hashlib.sha256()
    with gzip.GzipFile(fileobj=stream, mode="rb") as content:
        while chunk := content.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify_download(stream, name):
    """Check a downloaded file against :data:`SHA256`; leave it gzip-compressed in ``stream``.

    Raises ValueError (the caller tries the next mirror) unless the content matches. A mirror that
    serves the ``.gz`` with ``Content-Encoding: gzip`` makes the HTTP client hand back the
    decompressed bytes: those are accepted when their own SHA-256 matches, and compressed here so
    that the stored file is what every other mirror gives.
    """
    stream.seek(0)
    if stream.read(2) == _GZIP_MAGIC:
        stream.seek(0)
        try:
            digest = _content_sha256(stream)
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise ValueError(f"not valid gzip data ({error})") from None
        if digest != SHA256[name]:
            raise ValueError(f"SHA-256 of the decompressed content is {digest}, expected "
                             f"{SHA256[name]}")
        return
    stream.seek(0)
    content = stream.read()
    digest = hashlib.sha256(content).hexdigest()
    if digest != SHA256[name]:
        raise ValueError(f"not valid gzip data (it starts with {content[:2]!r}, not gzip's magic "
                         f"bytes) nor the uncompressed file (its SHA-256 is {digest}, expected "
                         f"{SHA256[name]})")
    stream.seek(0)
    stream.truncate()
    with gzip.GzipFile(fileobj=stream, mode="wb", mtime=0) as compressed:
        compressed.write(content)


def _show_progress():
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def _progress_bar(description):
    """A tqdm bar for pooch's downloader, labelled with the file name."""
    from tqdm import tqdm

    class Bar(tqdm):
        # pooch asks `if progressbar:`, which tqdm answers with an error until it knows its total.
        def __bool__(self):
            return True

    return Bar(desc=description, unit="B", unit_scale=True, leave=True)


def _download(name, directory, mirrors):
    """Fetch ``name.gz`` into ``directory`` from the first mirror that serves a verified copy."""
    import pooch

    target = directory / f"{name}.gz"
    failures = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{name}.gz"
        progress = _progress_bar(target.name) if _show_progress() else None
        # pooch's downloader, not pooch.retrieve: we check the decompressed hash ourselves (mirrors
        # recompress), and retrieve would log a known_hash=None advice the user cannot act on.
        downloader = pooch.HTTPDownloader(progressbar=False if progress is None else progress,
                                          chunk_size=1 << 16, timeout=_TIMEOUT)
        try:
            with atomic_write(target, "w+b") as stream:
                downloader(url, stream, None)
                _verify_download(stream, name)
        except Exception as error:  # any failure means: try the next mirror, report them all
            failures.append(f"{url}: {type(error).__name__}: {error}")
            continue
        finally:
            if progress is not None:
                progress.close()
        return target
    tried = "\n  ".join(failures)
    raise DatasetError(f"could not download {target.name} into {directory}; tried:\n  {tried}\n"
                       f"{_placement_hint(directory)}", target)
