"""The experiments (experiments/*.py): their outputs, and the outcomes they demonstrate.

The scripts are loaded the way the ``adamnb experiment`` command loads them, by file path. The
test-functions experiment runs once, in its --quick form, for the whole module.
"""

import json
import os
import re

import numpy as np
import pytest

import adamnb
from adamnb.cli import load_experiment
from adamnb.problems.functions import get

test_functions = load_experiment("test-functions")
reddi = load_experiment("reddi")
bias_correction = load_experiment("bias-correction")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 300_000


def assert_small_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert len(data) < MAX_PNG_BYTES, f"{path.name} has {len(data)} bytes"


def assert_no_temporary_files(folder):
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


# --- test-functions, --quick ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("test_functions")
    summary = test_functions.run(out, quick=True, jobs=2)
    return out, summary


def test_quick_run_writes_every_output(quick_run):
    out, summary = quick_run
    assert summary["quick"] is True
    assert summary["functions"] == list(test_functions.QUICK_FUNCTIONS)
    expected = {"table.md", "summary.json", "convergence.png"}
    expected |= {f"trajectories_{name}.png" for name in summary["functions"]}
    assert expected <= {p.name for p in out.iterdir()}
    for name in expected:
        if name.endswith(".png"):
            assert_small_png(out / name)
    assert_no_temporary_files(out)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["results"] == json.loads(json.dumps(summary["results"]))
    # Files get the usual permissions, not mkstemp's private 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "table.md").stat().st_mode & 0o777 == 0o666 & ~umask


def _rows(table, heading):
    """The body rows of the Markdown table under ``## heading``, as lists of cells."""
    section = table.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_table_agrees_with_summary_json(quick_run):
    out, _ = quick_run
    table = (out / "table.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    results, functions, methods = summary["results"], summary["functions"], summary["methods"]
    assert summary["criterion"] in table.replace("\n", " ")
    assert set(methods) == set(adamnb.METHODS) | {"BFGS", "L-BFGS-B"}

    rows = _rows(table, "All results")
    assert len(rows) == len(functions) * len(methods)
    for function, method, lr, gap, distance, steps, wall_ms, stopped in rows:
        expected = results[function][method]
        assert lr == ("-" if expected["lr"] is None else f"{expected['lr']:.3g}")
        assert float(gap) == pytest.approx(expected["final_gap"], rel=1e-2, abs=1e-300)
        assert float(distance) == pytest.approx(expected["distance"], rel=1e-2, abs=1e-300)
        assert steps == ("-" if expected["steps_to_target"] is None
                         else str(expected["steps_to_target"]))
        assert float(wall_ms) == pytest.approx(expected["wall_time_ms"], abs=0.006)
        assert stopped == expected["stopped"]

    overview = _rows(table, "Steps to first reach")
    assert [row[0] for row in overview] == methods
    for method, *cells in overview:
        for function, cell in zip(functions, cells):
            steps = results[function][method]["steps_to_target"]
            assert cell == ("-" if steps is None else str(steps))


def test_chosen_rate_follows_the_stated_criterion(quick_run):
    _, summary = quick_run
    target = summary["target_gap"]
    for function, by_method in summary["results"].items():
        for method in adamnb.METHODS:
            chosen = by_method[method]
            grid = chosen["grid"]
            assert [point["lr"] for point in grid] == summary["lr_grids"][method]
            assert chosen["lr"] in summary["lr_grids"][method]
            solved = [p for p in grid if p["final_gap"] < target and "diverged" not in p["stopped"]]
            if solved:
                assert chosen["final_gap"] < target
                assert chosen["steps_to_target"] == min(p["steps_to_target"] for p in solved)
            else:
                finite = [p["final_gap"] for p in grid if "diverged" not in p["stopped"]]
                if finite:
                    assert chosen["final_gap"] == min(finite)


def test_steps_to_target_is_consistent_with_the_final_gap(quick_run):
    _, summary = quick_run
    for by_method in summary["results"].values():
        for numbers in by_method.values():
            if numbers["final_gap"] < summary["target_gap"]:
                assert numbers["steps_to_target"] is not None
                assert numbers["steps_to_target"] <= numbers["nit"]
            assert numbers["distance"] >= 0 and numbers["final_gap"] >= 0


def test_references_solve_the_quick_problems(quick_run):
    _, summary = quick_run
    for function in summary["functions"]:
        for method in ("BFGS", "L-BFGS-B"):
            assert summary["results"][function][method]["final_gap"] < 1e-6


def test_adam_solves_the_four_classics_within_the_default_budget():
    # The acceptance criterion, at the default budget and grid, without the other methods.
    for name in ("rosenbrock", "booth", "matyas", "beale"):
        _, _, best, _ = test_functions.tune((name, "adam", test_functions.LR_GRIDS["adam"],
                                             test_functions.BUDGET))
        assert best.final_gap < 1e-6, name
        assert best.steps_to_target is not None and best.steps_to_target <= test_functions.BUDGET


def test_markdown_table_marks_unreached_targets_with_a_dash():
    summary = {
        "functions": ["booth"], "methods": ["adam", "BFGS"], "target_gap": 1e-6, "budget": 10,
        "gtol": 1e-5, "criterion": "c", "quick": True, "lr_grids": {"adam": [0.1]},
        "environment": {"system": "s", "machine": "m", "numba": "n"},
        "results": {"booth": {
            "adam": {"lr": 0.1, "final_gap": 2.0, "distance": 1.0, "steps_to_target": None,
                     "wall_time_ms": 0.5, "stopped": "budget used"},
            "BFGS": {"lr": None, "final_gap": 0.0, "distance": 0.0, "steps_to_target": 5,
                     "wall_time_ms": 1.0, "stopped": "gtol met"}}},
    }
    table = test_functions.markdown_table(summary)
    assert "| booth | adam | 0.1 | 2.00e+00 | 1.00e+00 | - | 0.50 | budget used |" in table
    assert "| booth | BFGS | - | 0.00e+00 | 0.00e+00 | 5 | 1.00 | gtol met |" in table
    assert "| adam | - |" in table and "| BFGS | 5 |" in table


# --- Reddi, Kale & Kumar (2018) -------------------------------------------------------------------

def test_reddi_adam_drifts_to_the_worst_point_and_amsgrad_does_not(tmp_path):
    summary = reddi.run(tmp_path, quick=True)
    adam, amsgrad = summary["results"]["Adam"], summary["results"]["AMSGrad"]
    assert summary["best_point"] == -1.0 and summary["worst_point"] == 1.0
    assert adam["final_x"] > 0.9 and adam["mean_x_last_tenth"] > 0.9
    assert amsgrad["final_x"] < -0.8 and amsgrad["mean_x_last_tenth"] < -0.8
    assert amsgrad["average_regret"] < adam["average_regret"]
    assert_small_png(tmp_path / "reddi.png")
    assert json.loads((tmp_path / "summary.json").read_text())["results"] == summary["results"]
    assert_no_temporary_files(tmp_path)


def test_reddi_gradient_has_the_papers_period():
    gradients = [reddi.gradient(t) for t in range(1, 2 * reddi.PERIOD + 2)]
    assert gradients[0] == 1010.0 and gradients[reddi.PERIOD] == 1010.0
    assert gradients.count(1010.0) == 3 and set(gradients) == {1010.0, -10.0}
    # Over one period the losses add up to +10 x: the best fixed point is x = -1.
    assert sum(gradients[:reddi.PERIOD]) == pytest.approx(10.0)


# --- Kingma & Ba (2014), section 6.4 --------------------------------------------------------------

def test_numpy_variant_with_bias_correction_is_adamnb_adam():
    tf = get("rosenbrock")
    ours = bias_correction.AdamWithoutBiasCorrection(lr=0.05, beta1=0.9, beta2=0.999,
                                                     bias_correction=True)
    theirs = adamnb.Adam(lr=0.05, beta1=0.9, beta2=0.999)
    x_ours, x_theirs = tf.x0.copy(), tf.x0.copy()
    for _ in range(300):
        ours.step(x_ours, tf.grad(x_ours))
        theirs.step(x_theirs, tf.grad(x_theirs))
    np.testing.assert_allclose(x_ours, x_theirs, rtol=1e-12, atol=1e-12)


def test_without_bias_correction_the_first_step_is_larger_by_the_predicted_factor():
    # Step 1: m = (1 - beta1) g, v = (1 - beta2) g^2, so |dx| = lr (1 - beta1) / sqrt(1 - beta2)
    # per coordinate, against lr with the correction.
    g = np.array([3.0, -0.5])
    for beta2 in (0.999, 0.99999):
        x = np.zeros(2)
        bias_correction.AdamWithoutBiasCorrection(0.1, 0.9, beta2).step(x, g)
        # (eps = 1e-8 in the denominator shifts it by a few parts per million.)
        np.testing.assert_allclose(np.abs(x), 0.1 * 0.1 / np.sqrt(1 - beta2), rtol=1e-4)


def test_bias_correction_demonstration(tmp_path):
    summary = bias_correction.run(tmp_path)
    lr = summary["lr"]
    for name in summary["problems"]:
        by_beta2 = summary["results"][name]
        for numbers in by_beta2.values():
            # Adam's steps stay within about lr per coordinate: lr * sqrt(2) in 2-D.
            assert numbers["with"]["largest_step"] <= 1.01 * lr * np.sqrt(2)
        close_to_one = by_beta2[str(max(summary["beta2s"]))]
        # Huge early steps without the correction ...
        assert close_to_one["without"]["largest_step"] > 10 * close_to_one["with"]["largest_step"]
        assert close_to_one["without"]["largest_step_at"] <= 10
        # ... after which the run stalls far from the minimum, while the corrected one converges.
        assert close_to_one["without"]["final_gap"] > 0.1
        assert close_to_one["with"]["final_gap"] < 1e-6
        # With a small beta2 the correction hardly matters for the step length.
        small = by_beta2[str(min(summary["beta2s"]))]
        assert small["without"]["largest_step"] < 2 * small["with"]["largest_step"]
    assert_small_png(tmp_path / "bias_correction.png")
    assert_no_temporary_files(tmp_path)


def test_table_numbers_are_readable_as_numbers(quick_run):
    out, _ = quick_run
    rows = _rows((out / "table.md").read_text(), "All results")
    number = re.compile(r"^-?\d+(\.\d+)?(e[+-]\d+)?$")
    for row in rows:
        for cell in row[3:5]:
            assert number.match(cell), cell
