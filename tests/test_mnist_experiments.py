"""The MNIST experiments end to end on real MNIST (--quick), where the files are available.

CI points ``ADAMNB_DATA`` at a copy of MNIST; elsewhere these tests skip and say how to run them.
"""

import json
import os
from pathlib import Path

import pytest

from adamnb import cli
from adamnb.nn.datasets import load_mnist

DATA = os.environ.get("ADAMNB_DATA")
needs_mnist = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "train-labels-idx1-ubyte.gz").exists()
    and not (Path(DATA) / "train-labels-idx1-ubyte").exists(),
    reason="real MNIST not found: set ADAMNB_DATA to a folder holding the four IDX files "
           "(CI uses ../shared/data/mnist)")


@needs_mnist
def test_softmax_regression_and_mlp_learn_real_mnist():
    import adamnb
    from adamnb.nn import MLP, SoftmaxRegression
    from adamnb.nn.training import train

    data = load_mnist()
    X, y, X_test, y_test = data.X_train[:10000], data.y_train[:10000], data.X_test, data.y_test
    model = SoftmaxRegression(l2=1e-4)
    params = model.init(0)
    history = train(model, params, adamnb.Adam(lr=3e-3, backend="cpu"), X, y, epochs=2,
                    X_test=X_test, y_test=y_test, progress=False)
    linear_accuracy = history[-1]["test_accuracy"]
    assert linear_accuracy > 0.88  # 10,000 images, 2 epochs
    mlp = MLP((784, 128, 10), dropout=0.2)
    params = mlp.init(0)
    history = train(mlp, params, adamnb.Adam(lr=1e-3, backend="cpu"), X, y, epochs=3,
                    X_test=X_test, y_test=y_test, progress=False)
    assert history[-1]["test_accuracy"] > max(0.91, linear_accuracy)


@needs_mnist
def test_keras_table_quick(tmp_path):
    assert cli.main(["experiment", "mnist-keras", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["results"]) == {"Adam", "RMSprop", "SGD", "Adadelta", "Adagrad"}
    for result in summary["results"].values():
        assert len(result["history"]["test_accuracy"]) == 2
    # Keras's defaults at 2 epochs on 6000 images: the adaptive methods learn, Adadelta's
    # lr = 0.001 barely moves (as in the article's setting).
    assert summary["results"]["Adam"]["final_test_accuracy"] > 0.85
    assert summary["results"]["Adadelta"]["final_test_accuracy"] < 0.5
    table = (tmp_path / "table.md").read_text()
    assert "| Adam | lr=0.001, beta1=0.9, beta2=0.999, eps=1e-07 |" in table and "0.9893" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "loss.png").stat().st_size > 0


@needs_mnist
def test_figure1_quick(tmp_path):
    assert cli.main(["experiment", "mnist-logistic", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["runs"]) == {"Adam", "SGD Nesterov", "AdaGrad"}
    for label, runs in summary["runs"].items():
        assert len(runs) == 2
        for run in runs.values():
            assert run["nit"] == 3 * 47  # 6000 rows / 128 -> 47 steps per epoch
            costs = run["history"]["train_loss"]
            assert costs[-1] < costs[0]  # the training cost falls epoch by epoch
        best = runs[f"{summary['best_alpha'][label]:g}"]
        assert best["final_test_accuracy"] > 0.8
    assert (tmp_path / "figure1.png").stat().st_size > 0


@needs_mnist
def test_figure2a_quick(tmp_path):
    assert cli.main(["experiment", "mnist-mlp", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["results"]) == ["Adam", "AdaGrad", "RMSProp", "SGD Nesterov",
                                        "AdaDelta"]
    assert summary["results"]["Adam"]["final_test_accuracy"] > 0.85
    assert (tmp_path / "figure2a.png").stat().st_size > 0


def test_figure2a_on_cuda_without_a_gpu_is_a_clear_error(capsys):
    from adamnb.backends import cuda
    if cuda.is_available():
        pytest.skip("a CUDA device is available here")
    with pytest.raises(SystemExit):
        cli.main(["experiment", "mnist-mlp", "--quick", "--device", "cuda"])
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from adamnb.nn import datasets
    from adamnb.nn.datasets import DatasetError
    # No download may succeed, whether or not this machine is online: port 9 (discard) refuses.
    monkeypatch.setattr(datasets, "MIRRORS", ["http://127.0.0.1:9/mnist/"])
    with pytest.raises(DatasetError, match="ADAMNB_DATA"):
        cli.load_experiment("mnist-keras").run(tmp_path, quick=True,
                                                data_dir=tmp_path / "none")
    # The command says it in one line.
    assert cli.main(["experiment", "mnist-keras", "--quick", "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("adamnb: error: ") and err.count("\n") == 1 and "ADAMNB_DATA" in err
