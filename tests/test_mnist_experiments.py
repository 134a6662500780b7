"""The MNIST experiments end to end on real MNIST (--quick), where the files are available.

CI points ``ADAMNB_DATA`` at a copy of MNIST; elsewhere these tests skip and say how to run them.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
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
    assert summary["model_name"] == "cnn" and summary["seeds"] == [0]
    assert set(summary["results"]) == {"Adam", "RMSprop", "SGD", "Adadelta", "Adagrad"}
    for result in summary["results"].values():
        assert len(result["val_accuracy"]) == len(result["val_loss"]) == 1
        assert len(result["runs"][0]["history"]["test_accuracy"]) == 2
    # Keras's defaults at 2 epochs on 6000 images: the adaptive methods learn, Adadelta's
    # lr = 0.001 barely moves (as in the article's setting).
    assert summary["results"]["Adam"]["val_accuracy"][0] > 0.85
    assert summary["results"]["Adadelta"]["val_accuracy"][0] < 0.5
    table = (tmp_path / "table.md").read_text()
    assert "| Adam | lr=0.001, beta1=0.9, beta2=0.999, eps=1e-07, eps_hat=True |" in table
    assert "0.9893" in table
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "loss.png").stat().st_size > 0


@needs_mnist
def test_keras_mlp_option_and_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["experiment", "mnist-keras", "--model", "mlp", "--quick", "--epochs", "1",
                     "--no-plots", "--workers", "1"]) == 0
    summary = json.loads((tmp_path / "results" / "mnist_keras" / "summary.json").read_text())
    assert summary["model_name"] == "mlp" and "512-512" in summary["model"]
    assert summary["results"]["Adam"]["val_accuracy"][0] > 0.85
    assert not (tmp_path / "results" / "mnist_cnn").exists()


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
    for label, grid in summary["grid"].items():
        costs = grid["selection_cost"]
        assert len(costs) >= 6
        finite = {float(lr): c for lr, c in costs.items() if c is not None}
        # the selected value is the grid's lowest cost, and the final run used it
        assert grid["selected"] == min(finite, key=finite.get)
        assert summary["results"][label]["options"]["lr"] == grid["selected"]
        assert grid["selected_inside_grid"] or grid["extensions"] == 3
        history = summary["results"][label]["history"]
        assert len(history["train_cost"]) == 2 and all(c > 0 for c in history["train_cost"])
    assert summary["results"]["Adam"]["final_test_accuracy"] > 0.85
    for name in ("figure2a.png", "figure2a_no_dropout.png", "grid.png", "accuracy.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "Protocol: each method's step size from a grid" in (tmp_path / "table.md").read_text()


def test_figure2a_search_extends_a_grid_whose_best_is_at_an_edge():
    from adamnb.experiments import mnist_mlp

    # A made-up cost, lowest at lr = 1 (above AdaGrad's grid), lr = 1e-3 for the others; a
    # diverged run (inf) at the largest values of SGD's grid is never selected.
    def cost(label, lr):
        if label == "SGD Nesterov" and lr > 0.05:
            return float("nan")
        target = 1.0 if label == "AdaGrad" else 1e-3
        return 1.0 + abs(math.log10(lr) - math.log10(target))

    def run(cells):
        return [{"final_train_loss": cost(c["method"], c["lr"])} for c in cells]

    result = mnist_mlp.search({}, 1, run)
    adagrad = result["AdaGrad"]
    # 0.001 .. 0.316, then 1 and 3.16 added: 1 is inside the grid after two extensions
    assert sorted(adagrad["grid"]) == [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0, 3.16]
    assert adagrad["selected"] == 1.0 and adagrad["selected_inside_grid"]
    assert adagrad["extensions"] == 2
    assert result["SGD Nesterov"]["selected"] == 0.001  # its lowest value: extended downward
    assert min(result["SGD Nesterov"]["grid"]) < 0.001
    assert result["Adam"]["selected"] == 0.001 and result["Adam"]["extensions"] == 0


@pytest.mark.parametrize("experiment", ["mnist-mlp", "muon"])
def test_the_device_option_without_a_gpu_is_a_clear_error(experiment, capsys):
    from adamnb.backends import cuda
    if cuda.is_available():
        pytest.skip("a CUDA device is available here")
    with pytest.raises(SystemExit):
        cli.main(["experiment", experiment, "--quick", "--device", "cuda"])
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


@needs_mnist
def test_muon_quick(tmp_path):
    """Muon + AdamW against AdamW (issue 15): every run learns, Muon's through its matrix groups
    (its state is a momentum matrix per weight matrix, AdamW's moments for the biases)."""
    from adamnb.experiments import muon
    from adamnb.nn import MLP

    assert cli.main(["experiment", "muon", "--quick", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["runs"]) == {"AdamW", "Muon + AdamW"}
    for label, runs in summary["runs"].items():
        assert len(runs) == len(muon.METHODS[label][1])
        best = runs[f"{summary['best_alpha'][label]:g}"]
        assert best["final_test_accuracy"] > 0.85
    for name in ("loss.png", "accuracy.png", "table.md"):
        assert (tmp_path / name).stat().st_size > 0
    model = MLP(muon.SIZES)
    optimizer = muon.make_optimizer("Muon + AdamW", 0.05, model)
    params = model.init(0)
    optimizer.step(params, np.ones_like(params))
    shapes = [tuple(a.shape for a in s) if isinstance(s, tuple) else s.shape
              for s in optimizer.state]
    assert shapes == [((512, 784),), ((512, 512),), ((10, 512),), (2, 512), (2, 512), (2, 10)]


def test_the_alpha_tables_reproduce_the_committed_ones_and_read_an_older_muon_summary():
    """table.md of mnist-logistic and muon from their committed summary.json, byte for byte; a
    muon summary from before the device option (no "device" key) ran on the CPU."""
    from adamnb.experiments import mnist_logistic, muon
    root = Path(__file__).resolve().parent.parent / "results"
    for module, folder in ((mnist_logistic, "mnist_logistic"), (muon, "muon")):
        summary = json.loads((root / folder / "summary.json").read_text())
        assert module.table(summary) == (root / folder / "table.md").read_text()
    older = json.loads((root / "muon" / "summary.json").read_text())
    device = older.pop("device")
    assert device == "cpu" and "; device cpu." in muon.table(older)
