"""adamnb.nn.datasets: IDX reading, MNIST loading and checks, directory resolution, and downloads from
a local HTTP server (synthetic files, small split sizes); the real files when ADAMNB_DATA is set."""

import functools
import gzip
import hashlib
import http.server
import os
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from adamnb.nn import datasets
from adamnb.nn.datasets import MNIST, DatasetError, load_mnist, read_idx

IMAGES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
LABELS = ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")
NAMES = (*IMAGES, *LABELS)
SIZES = {"train": 12, "test": 5}


def idx_bytes(array, magic=None, dims=None):
    """An IDX file's bytes, with the header optionally falsified."""
    array = np.asarray(array, np.uint8)
    magic = 0x0800 + array.ndim if magic is None else magic
    dims = array.shape if dims is None else dims
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes()


def write(path, content):
    """Write ``content`` to ``path``, gzip-compressed when the name ends in .gz."""
    path = Path(path)
    path.write_bytes(gzip.compress(content, mtime=0) if path.name.endswith(".gz") else content)
    return path


def synthetic(seed=0):
    """Small MNIST-shaped arrays: {file name: uint8 array}, pixels including 0 and 255."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for images, labels, n in zip(IMAGES, LABELS, SIZES.values()):
        pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        pixels[0, 0, :2] = 0, 255
        arrays[images] = pixels
        arrays[labels] = rng.integers(0, 10, size=n, dtype=np.uint8)
    return arrays


def place(directory, arrays, suffix=".gz"):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write(directory / f"{name}{suffix}", idx_bytes(array))
    return directory


@pytest.fixture
def small(monkeypatch):
    """Split sizes and checksums for the synthetic files of :func:`synthetic`."""
    arrays = synthetic()
    monkeypatch.setattr(datasets, "SPLIT_SIZES", dict(SIZES))
    monkeypatch.setattr(datasets, "SHA256", {name: hashlib.sha256(idx_bytes(array)).hexdigest()
                                             for name, array in arrays.items()})
    monkeypatch.delenv("ADAMNB_DATA", raising=False)
    return arrays


class Server:
    """A local HTTP server over a directory; ``requests`` records the paths asked for."""

    def __init__(self, root):
        self.root, self.requests = Path(root), []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                requests.append(self.path)

            def log_message(self, *args):
                pass  # keep the test output clean

        handler = functools.partial(Handler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, sub=""):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{sub}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server(tmp_path_factory, monkeypatch):
    """A server whose ``good/`` holds the synthetic files and ``empty/`` nothing."""
    for variable in ("NO_PROXY", "no_proxy"):  # a CI proxy must not intercept 127.0.0.1
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    root = tmp_path_factory.mktemp("www")
    (root / "empty").mkdir()
    place(root / "good", synthetic())
    running = Server(root)
    yield running
    running.close()


def assert_matches(data, arrays, flatten=True):
    assert isinstance(data, MNIST)
    for images, labels, X, y in ((IMAGES[0], LABELS[0], data.X_train, data.y_train),
                                 (IMAGES[1], LABELS[1], data.X_test, data.y_test)):
        n = len(arrays[images])
        assert X.dtype == np.float32 and y.dtype == np.int64
        assert X.shape == ((n, 784) if flatten else (n, 28, 28)) and y.shape == (n,)
        expected = arrays[images].astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(X, expected.reshape(X.shape))
        np.testing.assert_array_equal(y, arrays[labels])


# --- read_idx --------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_returns_the_declared_uint8_array(tmp_path, suffix):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write(tmp_path / f"x{suffix}", idx_bytes(array))
    result = read_idx(path)
    assert result.dtype == np.uint8 and result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, array)
    result[0, 0, 0] = 7  # a fresh array the caller owns
    assert read_idx(str(path))[0, 0, 0] == 0


@pytest.mark.parametrize("content, message", [
    (b"", "too short"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "not an IDX file of unsigned bytes"),  # float type
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "header truncated"),
    (idx_bytes(np.zeros((3, 2)))[:-1], "truncated: the header declares 3 x 2 = 6 bytes"),
    (idx_bytes(np.zeros(4)) + b"\x00", "has trailing bytes"),
])
def test_read_idx_rejects_malformed_files(tmp_path, content, message):
    path = write(tmp_path / "bad-idx", content)
    with pytest.raises(DatasetError, match=message) as raised:
        read_idx(path)
    assert str(path) in str(raised.value) and raised.value.path == path


def test_read_idx_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent-idx1-ubyte")


# --- load_mnist on local synthetic files ------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("flatten", [True, False])
def test_load_mnist_reads_values_scales_and_shapes(tmp_path, small, suffix, flatten):
    directory = place(tmp_path / "data", small, suffix)
    data = load_mnist(directory, download=False, flatten=flatten)
    assert_matches(data, small, flatten)
    assert data.X_train.reshape(12, -1)[0, :2].tolist() == [0.0, 1.0]  # pixels 0 and 255


def test_uncompressed_file_wins_over_gz(tmp_path, small):
    directory = place(tmp_path, small, ".gz")
    other = synthetic(seed=1)
    write(tmp_path / LABELS[0], idx_bytes(other[LABELS[0]]))
    data = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(data.y_train, other[LABELS[0]])
    np.testing.assert_array_equal(data.y_test, small[LABELS[1]])
    assert directory == tmp_path


def test_missing_files_without_download_say_how_to_place_them(tmp_path, small):
    place(tmp_path, {name: small[name] for name in NAMES[1:]})
    with pytest.raises(DatasetError) as raised:
        load_mnist(tmp_path / "nowhere", download=False)
    message = str(raised.value)
    for name in NAMES:
        assert name in message
    assert str(tmp_path / "nowhere") in message and "ADAMNB_DATA" in message
    assert not (tmp_path / "nowhere").exists()
    only_one = f"not found in {tmp_path}: {NAMES[0]} (with or without .gz). Call load_mnist with"
    with pytest.raises(DatasetError, match=re.escape(only_one)):
        load_mnist(tmp_path, download=False)


def test_dataset_error_is_an_oserror_whose_str_is_the_message(tmp_path):
    error = DatasetError("broken", tmp_path / "f")
    assert isinstance(error, OSError) and str(error) == "broken" and error.path == tmp_path / "f"


# --- corrupt local files -----------------------------------------------------------------------------

def corrupt_cases():
    """(name of the file to damage, its new bytes or a function of its gz bytes, expected message)."""
    arrays = synthetic()
    images, labels = arrays[IMAGES[0]], arrays[LABELS[0]]

    def flip_crc(gz):
        return gz[:-8] + bytes([gz[-8] ^ 0xFF]) + gz[-7:]

    bad_labels = labels.copy()
    bad_labels[3] = 10
    return {
        "bad magic": (IMAGES[0], idx_bytes(images, magic=0x12345678), "not an IDX file"),
        "labels magic on images": (IMAGES[0], idx_bytes(images.reshape(-1)),
                                   "magic number 2049, expected 2051"),
        "truncated payload": (IMAGES[0], idx_bytes(images)[:-100], "truncated"),
        "trailing bytes": (LABELS[0], idx_bytes(labels) + b"\x01", "trailing bytes"),
        "wrong dims": (IMAGES[0], idx_bytes(images[:, :, :27].copy()),
                       "images are 28 x 27 pixels, expected 28 x 28"),
        "counts disagree": (IMAGES[0], idx_bytes(images[:-1]), "11 images but .* 12 labels"),
        "label out of range": (LABELS[0], idx_bytes(bad_labels), "label 10 at index 3"),
        "bad gzip crc": (LABELS[0], flip_crc, "damaged or truncated gzip data.*CRC"),
        "truncated gzip": (IMAGES[0], lambda gz: gz[:len(gz) // 2], "damaged or truncated gzip"),
        "not gzip at all": (LABELS[0], lambda gz: idx_bytes(labels),
                            "damaged or truncated gzip data.*Not a gzipped file"),
    }


@pytest.mark.parametrize("case", list(corrupt_cases()))
def test_corrupt_local_file_is_named_and_explained(tmp_path, small, server, case):
    name, damage, message = corrupt_cases()[case]
    place(tmp_path, small)
    path = tmp_path / f"{name}.gz"
    path.write_bytes(damage(path.read_bytes()) if callable(damage) else gzip.compress(damage))
    damaged = path.read_bytes()
    with pytest.raises(DatasetError, match=message) as raised:
        load_mnist(tmp_path, mirrors=[server.url("good/")])
    text = str(raised.value)
    assert str(path) in text and raised.value.path == path
    assert "Delete it" in text and "ADAMNB_DATA" in text
    assert server.requests == [] and path.read_bytes() == damaged  # neither fetched nor replaced


def test_split_size_is_checked_against_the_table(tmp_path, small, monkeypatch):
    place(tmp_path, small)
    monkeypatch.setattr(datasets, "SPLIT_SIZES", {"train": 12, "test": 6})
    with pytest.raises(DatasetError, match="declares 5 examples, the MNIST test set has 6") as e:
        load_mnist(tmp_path, download=False)
    assert e.value.path == tmp_path / f"{IMAGES[1]}.gz"


# --- directory resolution ----------------------------------------------------------------------------

def test_directory_order_argument_then_environment_then_cache(tmp_path, small, monkeypatch):
    sources = {where: synthetic(seed) for seed, where in enumerate(["arg", "env", "cache"])}
    for where, arrays in sources.items():
        place(tmp_path / where, arrays)
    monkeypatch.setattr(datasets, "_cache_dir", lambda: tmp_path / "cache")

    def loaded():
        return load_mnist(data_dir, download=False).y_train

    data_dir = None
    np.testing.assert_array_equal(loaded(), sources["cache"][LABELS[0]])
    monkeypatch.setenv("ADAMNB_DATA", "")  # empty counts as unset
    np.testing.assert_array_equal(loaded(), sources["cache"][LABELS[0]])
    monkeypatch.setenv("ADAMNB_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(loaded(), sources["env"][LABELS[0]])
    data_dir = tmp_path / "arg"
    np.testing.assert_array_equal(loaded(), sources["arg"][LABELS[0]])
    data_dir = str(tmp_path / "arg")
    np.testing.assert_array_equal(loaded(), sources["arg"][LABELS[0]])


def test_default_cache_dir_is_poochs_user_cache():
    pooch = pytest.importorskip("pooch")
    assert datasets._cache_dir() == Path(pooch.os_cache("adamnb")).expanduser() / "mnist"


def test_import_does_not_import_pooch():
    code = "import sys, adamnb.nn.datasets; print('pooch' in sys.modules, 'requests' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


# --- downloads ---------------------------------------------------------------------------------------

def test_download_fetches_verifies_and_loads(tmp_path, small, server, capsys):
    directory = tmp_path / "new" / "mnist"
    data = load_mnist(directory, mirrors=[server.url("good")])  # no trailing slash on purpose
    assert_matches(data, small)
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for name in NAMES:
        content = gzip.decompress((directory / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == datasets.SHA256[name]
    assert sorted(server.requests) == sorted(f"/good/{n}.gz" for n in NAMES)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no progress bar
    server.requests.clear()
    load_mnist(directory, mirrors=[server.url("good/")])
    assert server.requests == []  # cached: nothing fetched again


def test_only_missing_files_are_downloaded(tmp_path, small, server):
    place(tmp_path, {name: small[name] for name in NAMES if name != LABELS[1]}, suffix="")
    assert_matches(load_mnist(tmp_path, mirrors=server.url("good/")), small)  # one URL as a str
    assert server.requests == [f"/good/{LABELS[1]}.gz"]


def test_a_404_mirror_falls_through_to_the_next(tmp_path, small, server):
    data = load_mnist(tmp_path, mirrors=[server.url("empty/"), server.url("good/")])
    assert_matches(data, small)
    for name in NAMES:
        assert server.requests.count(f"/empty/{name}.gz") == 1
        assert server.requests.count(f"/good/{name}.gz") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.gz" for n in NAMES)


def test_corrupt_download_is_rejected_and_leaves_nothing(tmp_path, small, server):
    bad = server.root / "bad"
    bad.mkdir()
    tampered = small[IMAGES[0]].copy()
    tampered[5, 5, 5] ^= 1  # a valid gzip of a valid IDX file, one bit off
    write(bad / f"{IMAGES[0]}.gz", idx_bytes(tampered))
    (bad / f"{LABELS[0]}.gz").write_bytes(b"this is not gzip")
    directory = tmp_path / "data"

    with pytest.raises(DatasetError) as raised:
        load_mnist(directory, mirrors=[server.url("bad/"), server.url("empty/")])
    message = str(raised.value)
    assert f"could not download {IMAGES[0]}.gz into {directory}" in message
    assert server.url(f"bad/{IMAGES[0]}.gz") in message and "SHA-256" in message
    assert datasets.SHA256[IMAGES[0]] in message
    assert server.url(f"empty/{IMAGES[0]}.gz") in message and "404" in message
    assert "ADAMNB_DATA" in message and raised.value.path == directory / f"{IMAGES[0]}.gz"
    assert list(directory.iterdir()) == []  # no partial file, no temporary file

    write(directory / IMAGES[0], idx_bytes(small[IMAGES[0]]))  # so the labels come next
    with pytest.raises(DatasetError, match=f"bad/{LABELS[0]}.gz: ValueError: not valid gzip"):
        load_mnist(directory, mirrors=[server.url("bad/")])
    assert list(directory.iterdir()) == [directory / IMAGES[0]]


def test_bad_mirror_then_good_mirror_keeps_only_the_verified_file(tmp_path, small, server):
    bad = server.root / "bad"
    bad.mkdir()
    for name in NAMES:
        (bad / f"{name}.gz").write_bytes(idx_bytes(small[name]))  # served uncompressed
    data = load_mnist(tmp_path, mirrors=[server.url("bad/"), server.url("good/")])
    assert_matches(data, small)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.gz" for n in NAMES)


def test_unreachable_mirror_is_reported(tmp_path, small, server):
    closed = Server(server.root)
    url = closed.url("good/")
    closed.close()  # nothing listens on that port any more
    with pytest.raises(DatasetError, match="ConnectionError"):
        load_mnist(tmp_path, mirrors=[url])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="no mirror"):
        load_mnist(tmp_path, mirrors=[])


def test_progress_bar_on_a_terminal_names_the_file(tmp_path, small, server, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "_show_progress", lambda: True)
    load_mnist(tmp_path, mirrors=[server.url("good/")])
    err = capsys.readouterr().err
    for name in NAMES:
        assert f"{name}.gz" in err
    assert "100%" in err


# --- the real MNIST ----------------------------------------------------------------------------------

def real_mnist_dir():
    directory = os.environ.get("ADAMNB_DATA")
    if not directory:
        pytest.skip("real MNIST not configured: set ADAMNB_DATA to a directory holding the four "
                    "MNIST files (in a checkout: ADAMNB_DATA=../shared/data/mnist)")
    return Path(directory)


def test_real_mnist_end_to_end():
    directory = real_mnist_dir()
    for name in NAMES:
        path = datasets._locate(directory, name)
        assert path is not None, f"{name} missing from ADAMNB_DATA={directory}"
        raw = path.read_bytes()
        content = gzip.decompress(raw) if path.name.endswith(".gz") else raw
        assert hashlib.sha256(content).hexdigest() == datasets.SHA256[name], path
    data = load_mnist(download=False)
    assert data.X_train.shape == (60000, 784) and data.X_test.shape == (10000, 784)
    assert data.X_train.dtype == data.X_test.dtype == np.float32
    assert data.y_train.dtype == data.y_test.dtype == np.int64
    for X in (data.X_train, data.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    assert data.y_train[:5].tolist() == [5, 0, 4, 1, 9] and data.y_test[:3].tolist() == [7, 2, 1]
    assert np.bincount(data.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                  5851, 5949]
    assert np.bincount(data.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                                 1009]
    square = load_mnist(directory, download=False, flatten=False)
    assert square.X_train.shape == (60000, 28, 28)
    np.testing.assert_array_equal(square.X_test.reshape(10000, 784), data.X_test)


# --- every problem is a DatasetError (issue 17, item 6) ---------------------------------------------

def test_a_data_directory_that_is_a_file_is_a_dataset_error(tmp_path, small, server):
    not_a_directory = tmp_path / "mnist"
    not_a_directory.write_text("a file, not a folder")
    for download in (False, True):
        with pytest.raises(DatasetError, match="is not a directory") as raised:
            load_mnist(not_a_directory, download=download, mirrors=[server.url("good/")])
        assert raised.value.path == not_a_directory
    assert server.requests == []


def test_a_directory_that_cannot_be_created_is_a_dataset_error(tmp_path, small, server):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a parent folder should be")
    directory = blocker / "mnist"
    with pytest.raises(DatasetError, match="cannot create the data directory") as raised:
        load_mnist(directory, mirrors=[server.url("good/")])
    assert raised.value.path == directory and isinstance(raised.value.__cause__, OSError)
    assert server.requests == []


def test_an_unreadable_file_is_a_dataset_error(tmp_path, small, monkeypatch):
    # The tests run as root, which chmod cannot lock out: make the open itself fail as it would
    # for a user without read permission.
    place(tmp_path, small, suffix="")
    refused = tmp_path / LABELS[1]
    real_open = open

    def guarded_open(file, *args, **kwargs):
        if Path(file) == refused:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    with pytest.raises(DatasetError, match="cannot read it.*Permission denied") as raised:
        load_mnist(tmp_path, download=False)
    assert raised.value.path == refused
    with pytest.raises(DatasetError, match="Permission denied"):
        read_idx(refused)


def test_a_directory_in_place_of_a_data_file_is_a_dataset_error(tmp_path):
    (tmp_path / "folder-idx1-ubyte").mkdir()
    with pytest.raises(DatasetError, match="cannot read it") as raised:
        read_idx(tmp_path / "folder-idx1-ubyte")
    assert raised.value.path == tmp_path / "folder-idx1-ubyte"


def test_header_sizes_whose_product_overflows_int64_are_rejected(tmp_path):
    # 2**31 * 2**31 * 4 = 2**64, which int64 arithmetic wraps to 0: the empty payload "matched".
    path = write(tmp_path / "huge-idx3-ubyte", idx_bytes(np.zeros(0), magic=0x0803,
                                                          dims=(2 ** 31, 2 ** 31, 4)))
    with pytest.raises(DatasetError, match="truncated: the header declares "
                                           "2147483648 x 2147483648 x 4 = 18446744073709551616"):
        read_idx(path)


def test_a_short_labels_file_is_blamed_not_the_images(tmp_path, small):
    place(tmp_path, small)
    labels = tmp_path / f"{LABELS[0]}.gz"
    write(labels, idx_bytes(small[LABELS[0]][:-1]))
    with pytest.raises(DatasetError) as raised:
        load_mnist(tmp_path, download=False)
    assert raised.value.path == labels
    assert str(raised.value).startswith(f"{labels} is not a valid MNIST file")


class EncodingServer(Server):
    """Serves the ``.gz`` files with ``Content-Encoding: gzip``, as some mirrors do: the client
    then decompresses them on the fly."""

    def __init__(self, root):
        self.root, self.requests = Path(root), []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def end_headers(self):
                if self.path.endswith(".gz"):
                    self.send_header("Content-Encoding", "gzip")
                super().end_headers()

            def guess_type(self, path):
                return "application/octet-stream"

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


def test_a_mirror_serving_gz_with_content_encoding_gzip_is_accepted(tmp_path, small, server):
    encoding = EncodingServer(server.root)
    try:
        data = load_mnist(tmp_path, mirrors=[encoding.url("good/")])
    finally:
        encoding.close()
    assert_matches(data, small)
    for name in NAMES:  # stored compressed, as from any other mirror
        content = gzip.decompress((tmp_path / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == datasets.SHA256[name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.gz" for n in NAMES)


def test_a_directory_that_cannot_be_searched_is_a_dataset_error(tmp_path, small, monkeypatch):
    # As root, chmod cannot take the search permission away: fail the stat as it would fail.
    place(tmp_path, small)
    real_stat = Path.stat

    def refusing_stat(self, *args, **kwargs):
        if self.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", refusing_stat)
    with pytest.raises(DatasetError, match="cannot look into the data directory.*Permission"):
        load_mnist(tmp_path, download=False)
