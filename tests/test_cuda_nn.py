"""The MLP on device arrays (adamnb.nn.cuda_ops, adamnb.nn.cuda_models) against the CPU: products,
masks, gradients, evaluation, training.

Simulator tests (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda*.py``) use 4 x 4
tiles for the matrix products and 8 threads per block elsewhere, so the tiny layers (sizes
6-5-4-3, batches of 7 rows) still span several blocks and partial edge tiles. Dropout masks must
match the CPU's exactly; float64 results agree with the CPU to ~1e-15, float32 ones to float32
rounding (the CPU evaluates the softmax in float64). The PTX tests run in the normal run.
"""

import re

import numpy as np
import pytest

import adamnb
from adamnb.backends import cuda as cuda_backend
from adamnb.nn import MLP, cuda_ops
from adamnb.nn import cuda_models as cuda_nn
from adamnb.nn import models as nn_models
from adamnb.nn.elements import ELEMENTS
from adamnb.nn.training import History, train
from tests.test_cuda import APPROXIMATE, F32_ARITHMETIC, _ptx_toolchain_missing, needs_cuda
from tests.test_nn import random_params as _params

SIZES = (6, 5, 4, 3)
ROWS = 7
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture(autouse=True)
def _tiny_blocks(monkeypatch):
    monkeypatch.setattr(cuda_ops, "TILE", 4)
    monkeypatch.setattr(cuda_backend, "DEFAULT_THREADS_PER_BLOCK", 8)


def _cuda():
    from numba import cuda
    return cuda


def _problem(dtype, rows=ROWS, sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((rows, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], rows)


def _twins(dtype, **options):
    """A CPU model and an identical one for the GPU (each keeps its own training_calls)."""
    return MLP(SIZES, dtype=dtype, seed=3, **options), MLP(SIZES, dtype=dtype, seed=3, **options)


# --- the matrix products --------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", ["gemm_nn", "gemm_tn", "gemm_nt"])
def test_tiled_products_match_numpy_in_all_three_layouts(layout, dtype):
    cuda = _cuda()
    rng = np.random.default_rng(2)
    M, N, K = 7, 5, 9  # none a multiple of the 4 x 4 tile: edge tiles are partial
    trans_a, trans_b = cuda_nn.GEMM_LAYOUTS[layout]
    A = rng.normal(size=(K, M) if trans_a else (M, K)).astype(dtype)
    B = rng.normal(size=(N, K) if trans_b else (K, N)).astype(dtype)
    C = cuda.device_array((M, N), dtype)
    cuda_backend.gemm(cuda.to_device(A), cuda.to_device(B), C, trans_a, trans_b, 4)
    expected = (A.T if trans_a else A) @ (B.T if trans_b else B)
    np.testing.assert_allclose(C.copy_to_host(), expected, **TOLERANCE[dtype])


# --- loss, gradient and masks ---------------------------------------------------------------------

CASES = [
    ((6, 3), {}),
    (SIZES, {"l2": 0.1}),
    (SIZES, {"dropout": 0.5, "input_dropout": 0.2, "l2": 0.1}),
]
CASE_IDS = ["softmax", "mlp-l2", "mlp-dropout-input_dropout-l2"]


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("sizes, options", CASES, ids=CASE_IDS)
def test_loss_and_grad_match_the_cpu_model(sizes, options, dtype):
    cuda = _cuda()
    cpu = MLP(sizes, dtype=dtype, seed=3, **options)
    gpu = MLP(sizes, dtype=dtype, seed=3, **options)
    params = _params(cpu)
    X, y = _problem(dtype, sizes=sizes)
    d_params = cuda.to_device(params)
    d_X, d_y = cuda.to_device(X), cuda.to_device(y)
    cuda_model = cuda_nn.CudaMLP(gpu)
    out = cuda.device_array(params.size, dtype)
    for call in range(2):  # two calls: fresh masks each time, on both sides
        f, g = cpu.loss_and_grad(params, X, y)
        f_gpu, g_gpu = cuda_model.loss_and_grad(d_params, d_X, d_y, out=out)
        assert g_gpu is out and gpu.training_calls == cpu.training_calls == call + 1
        assert type(f_gpu) is float
        assert f_gpu == pytest.approx(f, rel=TOLERANCE[dtype]["rtol"])
        np.testing.assert_allclose(g_gpu.copy_to_host(), g, **TOLERANCE[dtype])
    assert _same_bits(d_params.copy_to_host(), params)  # parameters untouched


def _same_bits(a, b):
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_dropout_masks_are_the_cpus_exactly(dtype):
    cuda = _cuda()
    cpu, gpu = _twins(dtype, dropout=0.5, input_dropout=0.3)
    params = _params(cpu)
    X, y = _problem(dtype)
    cuda_model = cuda_nn.CudaMLP(gpu)
    d_params, d_X = cuda.to_device(params), cuda.to_device(X)
    for call in (5, 6):  # any call number: the masks depend on it
        on_cpu = cpu.activations(params, X, call=call)
        on_gpu = cuda_model.activations(d_params, d_X, call=call)
        # input dropout: X * scale or 0, the same bits
        assert _same_bits(on_gpu[0], on_cpu[0])
        assert 0 < np.count_nonzero(on_cpu[0] == 0) < on_cpu[0].size
        # hidden layers: the same units dropped (or inactive), so the same zeros
        for k in range(1, len(SIZES) - 1):
            np.testing.assert_array_equal(on_gpu[k] == 0, on_cpu[k] == 0)
            np.testing.assert_allclose(on_gpu[k], on_cpu[k], **TOLERANCE[dtype])
        if call == 5:
            first = on_cpu[0]
    # the masks change with the call number
    assert not np.array_equal(on_cpu[0] == 0, first == 0)
    assert cpu.training_calls == gpu.training_calls == 0  # activations() draws no call number
    # and a training call draws the masks that activations() shows for its call number
    cpu.training_calls = gpu.training_calls = 5
    f, _ = cpu.loss_and_grad(params, X, y)
    f_gpu, _ = cuda_model.loss_and_grad(d_params, d_X, cuda.to_device(y))
    assert f_gpu == pytest.approx(f, rel=TOLERANCE[dtype]["rtol"])


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_evaluate_and_loss_match_the_cpu_model_across_chunks(dtype, monkeypatch):
    cuda = _cuda()
    monkeypatch.setattr(nn_models, "EVALUATION_CHUNK", 4)  # 11 rows: chunks of 4, 4 and 3
    cpu, gpu = _twins(dtype, dropout=0.5, l2=0.05)
    params = _params(cpu)
    X, y = _problem(dtype, rows=11, seed=4)
    cuda_model = cuda_nn.CudaMLP(gpu)
    d_params, d_X, d_y = cuda.to_device(params), cuda.to_device(X), cuda.to_device(y)
    loss, accuracy = cuda_model.evaluate(d_params, d_X, d_y)
    expected_loss, expected_accuracy = cpu.evaluate(params, X, y)
    assert loss == pytest.approx(expected_loss, rel=TOLERANCE[dtype]["rtol"])
    assert accuracy == expected_accuracy and 0 < accuracy < 1
    assert cuda_model.loss(d_params, d_X, d_y) == pytest.approx(
        cpu.loss(params, X, y), rel=TOLERANCE[dtype]["rtol"])
    assert gpu.training_calls == 0  # evaluation draws no masks


@needs_cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nan_logits_never_count_as_correct_on_the_device(dtype):
    """Issue 10, item 8: the CPU's fix (a row of NaN logits has no argmax) holds on the device."""
    cuda = _cuda()
    cpu, gpu = _twins(dtype)
    params = cpu.init(0)
    params[:] = np.nan
    X, _ = _problem(dtype, rows=8)
    y = np.array([0, 1, 0, 2, 0, 1, 0, 2])  # half the labels are class 0
    loss, accuracy = cpu.evaluate(params, X, y)
    assert np.isnan(loss) and accuracy == 0.0
    loss_gpu, accuracy_gpu = cuda_nn.CudaMLP(gpu).evaluate(
        cuda.to_device(params), cuda.to_device(X), cuda.to_device(y))
    assert np.isnan(loss_gpu) and accuracy_gpu == 0.0


@needs_cuda
def test_inputs_are_checked_and_bad_labels_explained():
    cuda = _cuda()
    model = MLP(SIZES, dtype=np.float32)
    cuda_model = cuda_nn.CudaMLP(model)
    params = cuda.to_device(model.init(0))
    X, y = _problem(np.float32)
    d_X, d_y = cuda.to_device(X), cuda.to_device(y)
    with pytest.raises(TypeError, match="NumPy array on the host"):
        cuda_model.loss_and_grad(params, X, d_y)
    with pytest.raises(ValueError, match="float32 device array"):
        cuda_model.loss_and_grad(params, cuda.to_device(X.astype(np.float64)), d_y)
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        cuda_model.loss_and_grad(params, cuda.to_device(X[:, :5].copy()), d_y)
    with pytest.raises(ValueError, match="integer labels"):
        cuda_model.loss_and_grad(params, d_X, cuda.to_device(y[:3].copy()))
    with pytest.raises(ValueError, match=f"device vector of {model.n_params} values"):
        cuda_model.loss_and_grad(cuda.to_device(np.zeros(7, np.float32)), d_X, d_y)
    with pytest.raises(ValueError, match="the batch is empty"):
        cuda_model.loss_and_grad(params, cuda.device_array((0, 6), np.float32),
                                 cuda.device_array(0, np.int64))
    bad = y.copy()
    bad[4] = 3
    with pytest.raises(ValueError, match=r"labels must lie in 0 \.\. 2"):
        cuda_model.loss_and_grad(params, d_X, cuda.to_device(bad))
    with pytest.raises(ValueError, match="tile"):
        cuda_nn.CudaMLP(model, tile=33)


@needs_cuda
def test_device_arrays_go_through_the_model_itself_and_convolutions_say_they_have_no_gpu_path():
    cuda = _cuda()
    cpu, gpu = _twins(np.float64, dropout=0.5)
    params = _params(cpu)
    X, y = _problem(np.float64)
    f, g = cpu.loss_and_grad(params, X, y)
    f_gpu, g_gpu = gpu.loss_and_grad(cuda.to_device(params), cuda.to_device(X), cuda.to_device(y))
    assert f_gpu == pytest.approx(f, rel=1e-12)
    np.testing.assert_allclose(g_gpu.copy_to_host(), g, **TOLERANCE[np.float64])
    from adamnb.nn import Conv2D, Dense, Flatten, Sequential
    cnn = Sequential([Conv2D(2, 3, activation="relu"), Flatten(), Dense(3)], input_shape=(5, 5, 1))
    with pytest.raises(TypeError, match="without a GPU path"):
        cnn.loss_and_grad(cuda.to_device(cnn.init(0)), cuda.to_device(np.zeros((2, 5, 5, 1),
                                                                                np.float32)),
                          cuda.to_device(np.zeros(2, np.int64)))


# --- training -------------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("dtype, epochs", [(np.float64, 2), (np.float32, 1)],
                         ids=["float64", "float32"])
def test_train_cuda_follows_the_cpu_training_loop(dtype, epochs):
    cuda = _cuda()
    cpu, gpu = _twins(dtype, dropout=0.3, l2=0.01)
    params = cpu.init(1)
    rng = np.random.default_rng(9)
    # 15 rows in batches of 7: 7, 7 and 1 rows per epoch (the last batch is short)
    X, y = rng.random((15, 6)).astype(dtype), rng.integers(0, 3, 15)
    X_test, y_test = rng.random((5, 6)).astype(dtype), rng.integers(0, 3, 5)
    host_params = params.copy()
    expected = train(cpu, host_params, adamnb.Adam(lr=0.05, backend="cpu"), X, y, epochs=epochs,
                     batch_size=7, X_test=X_test, y_test=y_test, seed=4, progress=False)
    d_params = cuda.to_device(params)
    optimizer = adamnb.Adam(lr=0.05, backend="cuda")
    history = cuda_nn.train_cuda(gpu, d_params, optimizer, X, y, epochs=epochs, batch_size=7,
                                 X_test=X_test, y_test=y_test, seed=4, progress=False)
    assert isinstance(history, History) and len(history) == epochs
    assert history["steps"] == expected["steps"] == [3 * (e + 1) for e in range(epochs)]
    assert gpu.training_calls == cpu.training_calls == 3 * epochs
    assert optimizer.t == 3 * epochs
    for field in ("train_loss", "test_loss"):
        np.testing.assert_allclose(history[field], expected[field], rtol=TOLERANCE[dtype]["rtol"])
    assert history["test_accuracy"] == expected["test_accuracy"]
    assert history.records[0].keys() == expected.records[0].keys()
    assert all(s > 0 for s in history["seconds"])
    np.testing.assert_allclose(d_params.copy_to_host(), host_params, **TOLERANCE[dtype])
    assert not np.allclose(host_params, params)  # training moved the parameters


@needs_cuda
def test_train_cuda_checks_its_arguments():
    cuda = _cuda()
    model = MLP(SIZES)
    params = cuda.to_device(model.init(0))
    X, y = _problem(np.float32)
    with pytest.raises(ValueError, match="runs on the CPU"):
        cuda_nn.train_cuda(model, params, adamnb.Adam(backend="cpu"), X, y, epochs=1)
    with pytest.raises(ValueError, match="Invalid epochs"):
        cuda_nn.train_cuda(model, params, adamnb.Adam(), X, y, epochs=0)
    with pytest.raises(ValueError, match="both X_test and y_test"):
        cuda_nn.train_cuda(model, params, adamnb.Adam(), X, y, epochs=1, X_test=X)
    with pytest.raises(TypeError, match="both inputs and labels on the device"):
        cuda_nn.train_cuda(model, params, adamnb.Adam(), cuda.to_device(X), y, epochs=1)
    with pytest.raises(TypeError, match="NumPy array on the host"):
        cuda_nn.train_cuda(model, model.init(0), adamnb.Adam(), X, y, epochs=1)
    with pytest.raises(ValueError, match="labels must lie"):
        cuda_nn.train_cuda(model, params, adamnb.Adam(), X, y + 5, epochs=1)


# --- the normal run: no device needed -------------------------------------------------------------

def test_cuda_mlp_wants_an_mlp_and_cuda(monkeypatch):
    with pytest.raises(TypeError, match="wraps an adamnb.nn.MLP"):
        cuda_nn.CudaMLP("784-10")
    from adamnb.backends import cuda as cuda_backend
    monkeypatch.setattr(cuda_backend, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CudaMLP needs CUDA"):
        cuda_nn.CudaMLP(MLP(SIZES))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_kernel_compiles_to_ptx_for_sm90(dtype):
    reason = _ptx_toolchain_missing()
    if reason:
        pytest.skip(reason)
    ptx = cuda_nn.kernel_ptx(dtype, tile=16, cc=(9, 0))
    assert set(ptx) == set(cuda_nn.GEMM_LAYOUTS) | set(ELEMENTS)
    for name, text in ptx.items():
        assert ".target sm_90" in text and ".entry" in text, name
        if name != "softmax_cross_entropy_row":
            assert not APPROXIMATE.search(text), (name, APPROXIMATE.search(text))
        if dtype is np.float32:
            # no float64 work at all in float32 kernels, not even conversions
            assert ".f64" not in text, (name, sorted(set(re.findall(r"\b[\w.]+\.f64\b", text))))
    # The softmax's exp and log are libdevice's accurate expf/log, which use a hardware
    # approximation internally (ex2.approx in expf, an rcp.approx seed refined by Newton steps
    # in log): those and nothing else; the softmax's own division is IEEE.
    softmax = ptx["softmax_cross_entropy_row"]
    approximate = set(re.findall(r"\b[a-z0-9]+(?:\.[a-z0-9]+)*\.(?:approx|ftz)(?:\.[a-z0-9]+)*",
                                 softmax))
    assert approximate <= {"ex2.approx.ftz.f32", "rcp.approx.ftz.f64"}, approximate
    assert re.search(r"\bdiv\.rn\.f(?:32|64)\b", softmax)
    for layout in cuda_nn.GEMM_LAYOUTS:
        assert "bar.sync" in ptx[layout] and ".shared" in ptx[layout]
    if dtype is np.float32:
        assert F32_ARITHMETIC.search(ptx["gemm_nn"])


@needs_cuda
@pytest.mark.parametrize("label", ["Muon + AdamW", "AdamW"])
def test_the_muon_experiment_trains_on_the_device(monkeypatch, label):
    """``adamnb experiment muon --device cuda``'s cell, on a tiny stand-in model: Muon's matrix
    steps and AdamW's groups on the device follow the CPU run of the same cell."""
    from adamnb.experiments import muon

    monkeypatch.setattr(muon, "SIZES", SIZES)
    monkeypatch.setattr(muon, "BATCH", 5)
    X, y = _problem(np.float32, rows=12)
    monkeypatch.setattr(muon, "load", lambda data, quick: (X, y, X[:6], y[:6]))
    cell = {"method": label, "alpha": muon.METHODS[label][1][1], "epochs": 1, "quick": True,
            "data": None}
    on_cpu = muon.train_cell({**cell, "device": "cpu"})
    on_gpu = muon.train_cell({**cell, "device": "cuda"})
    np.testing.assert_allclose(on_gpu["history"]["train_loss"], on_cpu["history"]["train_loss"],
                               rtol=1e-4)
    assert on_gpu["history"]["test_accuracy"] == on_cpu["history"]["test_accuracy"]


@needs_cuda
def test_the_mnist_mlp_experiment_trains_on_the_device(monkeypatch):
    """``adamnb experiment mnist-mlp --device cuda``'s training step, on a tiny stand-in model:
    the device run follows the CPU run of the same experiment code."""
    from adamnb.experiments import mnist_mlp

    monkeypatch.setattr(mnist_mlp, "SIZES", SIZES)
    monkeypatch.setattr(mnist_mlp, "BATCH", 5)
    X, y = _problem(np.float32, rows=12)
    data = (X, y, X[:6], y[:6])
    optimizer_class, options, _ = mnist_mlp.METHODS["Adam"]
    options = {**options, "lr": 1e-3}  # a value of its step-size grid
    on_cpu = mnist_mlp.train_one(optimizer_class, options, data, 2, "cpu", True)
    on_gpu = mnist_mlp.train_one(optimizer_class, options, data, 2, "cuda", True)
    assert len(on_gpu) == len(on_cpu) == 2
    np.testing.assert_allclose(on_gpu["train_loss"], on_cpu["train_loss"], rtol=1e-5)
    # the whole-training-set cost without dropout, Figure 2(a)'s second measure
    np.testing.assert_allclose(on_gpu["train_cost"], on_cpu["train_cost"], rtol=1e-5)
    assert on_gpu["test_accuracy"] == on_cpu["test_accuracy"]
