"""The experiments (adamnb/experiments/*.py): their outputs, and the outcomes they demonstrate.

The modules are loaded the way the ``adamnb experiment`` command loads them. The test-functions
experiment runs once, in its --quick form on 2 worker processes, for the whole module.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import adamnb
from adamnb.cli import load_experiment
from adamnb.problems.functions import get

test_functions = load_experiment("test-functions")
reddi = load_experiment("reddi")
bias_correction = load_experiment("bias-correction")
multistart = load_experiment("multistart")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 300_000


def assert_small_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert len(data) < MAX_PNG_BYTES, f"{path.name} has {len(data)} bytes"


def assert_no_temporary_files(folder):
    """No temporary file, and no store of finished runs once the outputs are written."""
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


# --- test-functions, --quick ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("test_functions")
    summary = test_functions.run(out, quick=True, workers=2)
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
    # every method but Muon, which updates matrices only (a 2-D point has none)
    assert set(methods) == set(adamnb.METHODS) - {"muon"} | {"BFGS", "L-BFGS-B"}

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
        for method in set(adamnb.METHODS) - {"muon"}:
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
        best, _ = test_functions.tune(name, "adam", test_functions.LR_GRIDS["adam"],
                                      test_functions.BUDGET)
        assert best.final_gap < 1e-6, name
        assert best.steps_to_target is not None and best.steps_to_target <= test_functions.BUDGET


def test_the_table_marks_unreached_targets_with_a_dash():
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
    table = test_functions.table(summary)
    assert "| booth | adam | 0.1 | 2.00e+00 | 1.00e+00 | - | 0.50 | budget used |" in table
    assert "| booth | BFGS | - | 0.00e+00 | 0.00e+00 | 5 | 1.00 | gtol met |" in table
    assert "| adam | - |" in table and "| BFGS | 5 |" in table


def test_the_sweep_gives_the_serial_run_s_numbers(quick_run, tmp_path):
    # The quick run went over 2 worker processes; the same in this process, in order.
    _, summary = quick_run
    serial = test_functions.run(tmp_path, quick=True, workers=1, plots=False)

    def numbers(results):
        return {name: {method: {key: value for key, value in run.items() if key != "wall_time_ms"}
                       for method, run in by_method.items()}
                for name, by_method in results.items()}

    assert numbers(serial["results"]) == numbers(summary["results"])


def test_quick_figures_say_quick_run(quick_run):
    _, summary = quick_run
    histories = {name: {method: np.array([1.0, 0.5, 0.1]) for method in summary["methods"]}
                 for name in summary["functions"]}
    for quick in (True, False):
        figure = test_functions.convergence_figure(histories, summary["functions"],
                                                   summary["methods"], quick=quick)
        assert ("quick run" in figure.get_suptitle()) is quick


# --- outputs: where they go, checked first, never left half-written -------------------------------

def run_command(*arguments, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "adamnb", *arguments], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def test_outputs_go_under_the_current_directory_and_quick_runs_apart(tmp_path):
    folder = tmp_path / "results" / "bias_correction"
    quick = folder / "quick"

    def run(*options):
        completed = run_command("experiment", "bias-correction", "--workers", "1", *options,
                                cwd=tmp_path)
        assert completed.returncode == 0, completed.stderr

    run("--quick")  # no full run here yet: the quick run takes the experiment's folder
    assert json.loads((folder / "summary.json").read_text())["quick"] is True
    assert (folder / "bias_correction.png").is_file() and not quick.exists()
    run("--no-plots")  # a full run writes over a quick one
    assert json.loads((folder / "summary.json").read_text())["quick"] is False
    run("--quick")  # and a quick run never writes over a full one
    assert json.loads((quick / "summary.json").read_text())["quick"] is True
    assert (quick / "bias_correction.png").is_file()
    assert json.loads((folder / "summary.json").read_text())["quick"] is False


@pytest.mark.parametrize("name", ["test-functions", "reddi", "bias-correction", "multistart",
                                  "mnist-keras", "mnist-logistic", "mnist-mlp", "muon"])
def test_an_unusable_out_is_an_error_before_any_work(name, tmp_path, capsys, monkeypatch):
    from adamnb import cli
    module = load_experiment(name)
    monkeypatch.setattr(module, "run", lambda *a, **k: pytest.fail("the work started"))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    cases = [(a_file, "is a file, not a folder"),
             (a_file / "below", f"cannot be created: {a_file} is a file")]
    for out, message in cases:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["experiment", name, "--quick", "--out", str(out)])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    # No write permission: simulated (the tests run as root, for whom every folder is writable).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if Path(path) == tmp_path and mode & os.W_OK else real_access(path, mode, **kw)))
    with pytest.raises(SystemExit):
        cli.main(["experiment", name, "--quick", "--out", str(tmp_path / "new")])
    assert f"no write permission in {tmp_path}" in capsys.readouterr().err


def test_every_experiment_is_checked_for_an_unusable_out():
    from adamnb import cli
    parametrised = next(mark.args[1] for mark in
                        test_an_unusable_out_is_an_error_before_any_work.pytestmark)
    assert set(parametrised) == set(cli.EXPERIMENTS)


def _assert_whole(folder):
    """Every file under ``folder`` is complete: no temporary file, JSON that parses, PNGs that
    end with their IEND chunk."""
    for path in folder.rglob("*"):
        if path.is_dir():
            continue
        assert not path.name.endswith(".tmp"), f"temporary file left: {path}"
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".png":
            assert data[:8] == PNG_SIGNATURE and data[-8:-4] == b"IEND", f"partial PNG {path}"
        elif path.suffix == ".md":
            assert data.endswith(b"\n"), f"partial table {path}"


@pytest.mark.slow
def test_interrupting_the_experiment_anywhere_leaves_no_partial_file(tmp_path, quick_run):
    import signal
    import time
    out = tmp_path / "out"
    arguments = [sys.executable, "-m", "adamnb", "experiment", "test-functions", "--quick",
                 "--out", str(out), "--workers", "2"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    store = out / ".sweep"
    # Ctrl-C (SIGINT to the whole process group) at several points: while starting, in the
    # middle of the runs, and while the figures are being written.
    triggers = [lambda: False,
                lambda: store.is_dir() and len(list(store.glob("*.json"))) >= 4,
                lambda: (out / "summary.json").exists()]
    for delay, ready in zip((1.0, 120.0, 120.0), triggers):
        process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True, env=environment)
        started = time.monotonic()
        while process.poll() is None and time.monotonic() - started < delay and not ready():
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
        if process.returncode == 0:
            continue  # it finished first: nothing to check but the files
        assert process.returncode in (130, -signal.SIGINT), err
        if process.returncode == 130:  # inside the command: one line, no traceback
            assert "Traceback" not in err and "interrupted" in err.splitlines()[-1]
        if out.exists():
            _assert_whole(out)
    completed = subprocess.run(arguments, capture_output=True, text=True, timeout=300,
                               env=environment)
    assert completed.returncode == 0, completed.stderr
    _assert_whole(out)
    assert not store.exists()  # the outputs are written: the store is gone
    resumed = json.loads((out / "summary.json").read_text())
    for name, by_method in quick_run[1]["results"].items():
        for method, numbers in by_method.items():
            assert {k: v for k, v in resumed["results"][name][method].items()
                    if k != "wall_time_ms"} == \
                {k: v for k, v in numbers.items() if k != "wall_time_ms"}


# --- multi-start at scale --------------------------------------------------------------------------

def test_multistart_does_not_depend_on_the_chunking(tmp_path, monkeypatch):
    import adamnb
    summary = multistart.run(tmp_path / "a", quick=True, starts=240, workers=1)
    assert summary["cells"] == 4 and summary["starts"] == 240
    monkeypatch.setattr(multistart, "CHUNK", 7)
    # Other chunks, computed last to first (a map-like callable, in this process, where the
    # batched loop is compiled already).
    def backwards(func, items):
        items = list(items)
        return [func(item) for item in items[::-1]][::-1]

    again = multistart.run(tmp_path / "b", quick=True, starts=240, workers=backwards,
                           plots=False)
    assert again["cells"] == 35
    for key in ("best", "found_global", "final_gap_quantiles", "coordinates_away_from_0",
                "status_counts"):
        assert json.dumps(again[key], default=list) == json.dumps(summary[key], default=list)
    # The best end point is that start's own single-start minimize run, bit for bit.
    tf = get("rastrigin", n=multistart.DIM)
    start = multistart.draw_starts(multistart.SEED, 240, multistart.DIM, tf.domain)[
        summary["best"]["start_index"]]
    alone = adamnb.minimize(tf.value_and_grad, start, jac=True, method=multistart.METHOD,
                            options=multistart.QUICK_OPTIONS)
    assert alone.fun == summary["best"]["fun"]
    assert np.array_equal(alone.x, summary["best"]["x"])
    assert sum(summary["coordinates_away_from_0"]) == 240
    assert_small_png(tmp_path / "a" / "multistart.png")


# --- Reddi, Kale & Kumar (2018) -------------------------------------------------------------------

def test_reddi_adam_drifts_to_the_worst_point_and_amsgrad_does_not(tmp_path):
    summary = reddi.run(tmp_path, quick=True, workers=1)
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
    summary = bias_correction.run(tmp_path, workers=1)
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


def test_markdown_table_lines_and_its_checks():
    from adamnb.experiments import markdown_table
    assert markdown_table(["a", "b"], [["1", "2"], ("3", "4")], align="lr") == [
        "| a | b |", "|---|---:|", "| 1 | 2 |", "| 3 | 4 |"]
    with pytest.raises(ValueError, match="row of 1 cells"):
        markdown_table(["a", "b"], [["1"]])
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="l")
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a"], [], align="c")
