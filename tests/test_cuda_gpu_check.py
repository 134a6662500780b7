"""benchmarks/gpu_check.py, the one-command GPU check, on toy sizes: in numba's CUDA simulator in CI
(``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda*.py``), on a GPU where there is one.
Every part must run and report; the timings of a simulator run mean nothing and are not checked.
"""

import importlib.util
import json
from pathlib import Path

import pytest

import adamnb
from adamnb.backends import cuda as cuda_backend

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"

needs_cuda = pytest.mark.skipif(
    not cuda_backend.is_available(),
    reason="needs a CUDA GPU or numba's simulator: NUMBA_ENABLE_CUDASIM=1 python -m pytest -q "
           "tests/test_cuda*.py")


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_cuda
def test_every_part_runs_and_reports(tmp_path):
    gpu_check = load_script()
    out = tmp_path / "report.json"
    code = gpu_check.main(["--tiny", "--out", str(out),
                           "--tests", "test_step_rejects_mismatched_device_arrays"])
    report = json.loads(out.read_text())
    assert code == 0, report
    assert report["tiny"] and report["device"]["simulator"] == cuda_backend.simulator_enabled()
    parts = report["parts"]
    assert set(parts) == set(gpu_check.PARTS)
    assert not any("error" in part for part in parts.values()), parts
    assert parts["tests"]["returncode"] == 0 and parts["tests"]["counts"]["passed"] == 1
    assert parts["copy_bandwidth"]["bytes_per_second"] > 0
    rows = {row["contender"]: row for row in parts["update"]["results"]}
    assert set(adamnb.METHODS) - {"muon"} <= set(rows)  # Muon: matrices, its own part
    assert rows["adam"]["bytes_per_parameter"] == 28 and rows["amsgrad"]["bytes_per_parameter"] == 36
    assert all(row["fraction_of_copy_bandwidth"] > 0 for row in rows.values())
    muon = parts["muon"]
    assert set(muon["seconds"]) >= {"adamnb.Muon (device)", "adamnb.Muon (host)"}
    assert muon["first_step_max_abs_difference_device_host"] < 1e-5
    mnist = parts["mnist"]
    assert mnist["device_epoch_seconds"]["second"] > 0 and mnist["cpu_epoch_seconds"] > 0
    assert len(mnist["device_train_loss"]) == 2 and len(mnist["cpu_train_loss"]) == 1


def test_without_cuda_the_report_says_how_to_get_it(tmp_path, monkeypatch):
    gpu_check = load_script()
    monkeypatch.setattr(cuda_backend, "is_available", lambda: False)
    out = tmp_path / "report.json"
    assert gpu_check.main(["--out", str(out)]) == 1
    assert "numba-cuda" in json.loads(out.read_text())["error"]


@pytest.mark.parametrize("option", ["--repeats", "--size", "--side"])
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_sizes_and_repeats_must_be_positive_integers(option, value, capsys):
    gpu_check = load_script()
    with pytest.raises(SystemExit) as stop:
        gpu_check.main([option, value])
    assert stop.value.code == 2
    assert f"argument {option}: expected a positive integer, got '{value}'" in \
        capsys.readouterr().err


@needs_cuda
def test_the_full_sizes_are_refused_in_the_simulator(capsys):
    if not cuda_backend.simulator_enabled():
        pytest.skip("a real GPU runs the full sizes")
    with pytest.raises(SystemExit):
        load_script().main(["--parts", "muon", "--tests", "none"])
    assert "add --tiny" in capsys.readouterr().err
