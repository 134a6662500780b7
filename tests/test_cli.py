"""The ``adamnb`` command: every subcommand exits 0 and prints what it says; wrong names list the
right ones; ``--help`` works everywhere."""

import json
import re
import shutil
import subprocess
import sys

import pytest

import adamnb
from adamnb import cli
from adamnb.optim.rules import RULES
from adamnb.problems.functions import FUNCTIONS


def run_module(*arguments, cwd=None):
    """``python -m adamnb ARGUMENTS`` in a subprocess, output captured (so not a terminal)."""
    return subprocess.run([sys.executable, "-m", "adamnb", *arguments], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def exit_code(arguments):
    with pytest.raises(SystemExit) as raised:
        cli.main(arguments)
    return raised.value.code


# --- adamnb methods -------------------------------------------------------------------------------

def test_methods_lists_every_method_with_its_defaults(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, rule in RULES.items():
        line = next(line for line in out.splitlines() if line.startswith(f"{name} "))
        assert rule.summary in line
    adam_defaults = out.split("\nadam ", 1)[1].splitlines()[1]
    assert "lr=0.001" in adam_defaults and "beta1=0.9" in adam_defaults
    assert "beta2=0.999" in adam_defaults and "eps=1e-08" in adam_defaults
    assert "amsgrad=True" in out.split("\namsgrad ", 1)[1].splitlines()[1]


def test_methods_with_a_name_shows_its_options(capsys):
    assert cli.main(["methods", "RAdam"]) == 0
    assert capsys.readouterr().out == adamnb.show_options("radam", disp=False)


# --- adamnb minimize ------------------------------------------------------------------------------

def test_minimize_prints_the_optimize_result():
    completed = run_module("minimize", "booth", "--method", "adam", "--lr", "0.1",
                           "--maxiter", "2000")
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "adamnb.minimize(booth, x0=[0, 0], method='adam', options={'lr': 0.1, 'maxiter': " \
           "2000})" in out
    for field in ("message:", "success: True", "status: 0", "fun:", "x:", "nit:", "jac:",
                  "nfev:", "njev:"):
        assert field in out
    gap = float(re.search(r"f - f\* = (\S+);", out).group(1))
    assert gap < 1e-6
    assert completed.stderr == ""  # not a terminal: no progress bar, no noise


def test_minimize_options_and_plot(tmp_path, capsys):
    target = tmp_path / "run.png"
    code = cli.main(["minimize", "rosenbrock", "--method", "AMSGrad", "--lr", "0.1",
                     "--maxiter", "3000", "--option", "beta2=0.99", "--option", "eps=1e-8",
                     "--x0=-1.5,2", "--plot", str(target)])
    assert code == 0
    out = capsys.readouterr().out
    assert "x0=[-1.5, 2]" in out and "method='amsgrad'" in out and "'beta2': 0.99" in out
    assert "allvecs" not in out and "fun_history" not in out
    assert f"Wrote {target}" in out
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size < 300_000


def test_minimize_in_more_dimensions_plots_convergence_only(tmp_path, capsys):
    target = tmp_path / "rosenbrock5.png"
    assert cli.main(["minimize", "rosenbrock", "--dim", "5", "--lr", "0.05", "--maxiter", "200",
                     "--plot", str(target)]) == 0
    assert "x0=[-1.2, 1, -1.2, 1, -1.2]" in capsys.readouterr().out
    assert target.is_file()


@pytest.mark.parametrize("arguments, listed", [
    (["minimize", "rosen"], list(FUNCTIONS)),
    (["minimize", "booth", "--method", "adm"], list(adamnb.METHODS)),
    (["methods", "adm"], list(adamnb.METHODS)),
    (["experiment", "tset-functions"], list(cli.EXPERIMENTS)),
    (["minimize", "booth", "--option", "betas=0.9"], ["beta1", "beta2"]),
])
def test_wrong_names_are_errors_that_list_the_right_ones(arguments, listed, capsys):
    assert exit_code(arguments) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    for name in listed:
        assert name in err


def test_bad_values_are_errors_not_tracebacks(capsys):
    assert exit_code(["minimize", "booth", "--option", "beta2=2"]) == 2
    assert "Invalid beta2" in capsys.readouterr().err
    assert exit_code(["minimize", "booth", "--option", "beta2"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert exit_code(["minimize", "booth", "--x0=1,2,3"]) == 2
    assert "2-dimensional" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, expected", [
    ([], ["methods", "minimize", "experiment"]),
    (["methods"], ["METHOD"]),
    (["minimize"], ["--method", "--lr", "--maxiter", "--option", "--plot", "rosenbrock"]),
    (["experiment"], [*cli.EXPERIMENTS, "--quick"]),
    (["experiment", "reddi"], ["adamnb experiment reddi", "--quick", "--out"]),
    (["experiment", "test-functions"], ["--quick", "--out", "--workers", "--scheduler"]),
    (["experiment", "multistart"], ["--starts", "--dim", "--workers", "--scheduler"]),
    (["experiment", "bias-correction"], ["--quick", "--out"]),
])
def test_help_everywhere(arguments, expected, capsys):
    assert exit_code([*arguments, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    for word in expected:
        assert word in out


@pytest.mark.parametrize("arguments, shown", [
    (["--x0", "-1.5,2"], "x0=[-1.5, 2]"),
    (["--x0", "-1.5, -2"], "x0=[-1.5, -2]"),
    (["--x0=-1.5,2"], "x0=[-1.5, 2]"),
    (["--x0", "-.5,1e-3"], "x0=[-0.5, 0.001]"),
])
def test_negative_numbers_as_option_values(arguments, shown, capsys):
    assert cli.main(["minimize", "rosenbrock", "--maxiter", "5", *arguments]) == 0
    assert shown in capsys.readouterr().out


def test_negative_values_reach_the_checks_of_every_numeric_option(capsys):
    for option, message in (("--lr", "Invalid lr: -0.1"), ("--gtol", "gtol"),
                            ("--maxiter", "maxiter"), ("--dim", "n=-3")):
        value = "-3" if option == "--dim" else ("-5" if option == "--maxiter" else "-0.1")
        assert exit_code(["minimize", "rosenbrock", option, value]) == 2
        err = capsys.readouterr().err
        assert "expected one argument" not in err and message in err, (option, err)
    # Not a number: still an option name, and argparse says so.
    assert exit_code(["minimize", "rosenbrock", "--x0", "--lr"]) == 2
    assert "expected one argument" in capsys.readouterr().err


def test_join_negative_values_only_joins_numbers_after_known_options():
    join = cli.join_negative_values
    options = {"--x0", "--lr"}
    assert join(["--x0", "-1,2", "--lr", "-1e-3", "-h"], options) == ["--x0=-1,2", "--lr=-1e-3",
                                                                     "-h"]
    assert join(["--x0", "-h"], options) == ["--x0", "-h"]
    assert join(["--quick", "-1"], options) == ["--quick", "-1"]


def test_experiment_options_take_negative_numbers():
    from adamnb.experiments import experiment_parser
    args = experiment_parser("x", "d", "q", "x").parse_args(["--workers", "-1"])
    assert args.workers == -1


def test_a_non_integer_count_names_the_value_not_a_function(capsys):
    from adamnb.experiments import experiment_parser
    with pytest.raises(SystemExit):
        experiment_parser("x", "d", "q", "x").parse_args(["--workers", "abc"])
    err = capsys.readouterr().err
    assert "--workers: expected an integer, got 'abc'" in err and "_workers" not in err


@pytest.mark.parametrize("plot, message", [
    ("out.xyz", "unsupported file type '.xyz'"),
    ("", "is a folder"),
    ("a-file/out.png", "is a file, not a folder"),
])
def test_bad_plot_paths_are_errors_before_the_run(plot, message, tmp_path, capsys, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(adamnb, "minimize", lambda *a, **k: pytest.fail("the run started"))
    assert exit_code(["minimize", "booth", "--plot", str(tmp_path / plot)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.tmp"))


def test_errors_of_the_work_are_one_line(tmp_path, capsys, monkeypatch):
    from adamnb.nn import datasets
    monkeypatch.setattr(datasets, "MIRRORS", ["http://127.0.0.1:9/mnist/"])
    # A damaged MNIST file: found before any run starts.
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes(b"not an IDX file" * 10)
    assert cli.main(["experiment", "mnist-keras", "--quick", "--data", str(data), "--out",
                     str(tmp_path / "out"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("adamnb: error: ") and err.count("\n") == 1
    assert "train-images-idx3-ubyte is not a valid MNIST file" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_failed_run_is_one_line_and_keeps_the_finished_ones(tmp_path, capsys, monkeypatch):
    reddi = cli.load_experiment("reddi")
    real_play = reddi.play

    def play(amsgrad, steps, alpha=reddi.ALPHA):
        if amsgrad:
            raise FloatingPointError("simulated failure")
        return real_play(amsgrad, steps, alpha)

    monkeypatch.setattr(reddi, "play", play)
    assert cli.main(["experiment", "reddi", "--quick", "--out", str(tmp_path),
                     "--workers", "1"]) == 1
    err = capsys.readouterr().err
    last = err.splitlines()[-1]  # after the progress lines, the error: one line
    assert last.startswith("adamnb: error: ") and "Traceback" not in err
    assert "1 of 2 cells failed (variant=AMSGrad" in last
    assert "FloatingPointError: simulated failure" in last
    assert len(list((tmp_path / ".sweep").glob("*.json"))) == 1  # Adam's, for the next run


def test_a_command_is_required(capsys):
    assert exit_code([]) == 2
    assert "COMMAND" in capsys.readouterr().err


# --- adamnb experiment ----------------------------------------------------------------------------

def test_experiment_runs_and_reports_one_line_per_run_off_a_terminal(tmp_path):
    completed = run_module("experiment", "reddi", "--quick", "--out", str(tmp_path),
                           cwd=tmp_path)  # from anywhere, not only the repository
    assert completed.returncode == 0, completed.stderr
    assert "Adam " in completed.stdout and "AMSGrad" in completed.stdout
    assert f"Wrote {tmp_path}" in completed.stdout
    progress = completed.stderr.splitlines()
    assert len(progress) == 2, completed.stderr  # one line per finished run, no bar
    assert {line.split(" variant=")[1].split(",")[0] for line in progress} == {"Adam", "AMSGrad"}
    assert all(line.startswith("reddi: ") and "(done, " in line for line in progress)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["results"]["Adam"]["final_x"] > 0.9
    assert (tmp_path / "reddi.png").is_file()


def test_experiment_through_main(tmp_path, capsys):
    assert cli.main(["experiment", "bias-correction", "--out", str(tmp_path), "--workers",
                     "1"]) == 0
    out = capsys.readouterr().out
    assert "with bias correction" in out.lower() or "with)" in out
    assert (tmp_path / "bias_correction.png").is_file()


def test_experiment_registry_names_real_modules():
    for name in cli.EXPERIMENTS:
        assert callable(cli.load_experiment(name).main), name
    with pytest.raises(ValueError, match="test-functions"):
        cli.load_experiment("nope")


@pytest.mark.skipif(shutil.which("adamnb") is None, reason="console script not installed")
def test_console_script():
    completed = subprocess.run(["adamnb", "--version"], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"adamnb {adamnb.__version__}"


# --- atomic writes --------------------------------------------------------------------------------

def test_atomic_write_reads_back_in_update_modes_and_leaves_nothing_on_failure(tmp_path):
    from adamnb._io import atomic_write
    target = tmp_path / "data.bin"
    with atomic_write(target, "w+b") as stream:
        stream.write(b"abc")
        stream.seek(0)
        assert stream.read() == b"abc"
    assert target.read_bytes() == b"abc"
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target, "wb") as stream:
            stream.write(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"abc" and [p.name for p in tmp_path.iterdir()] == ["data.bin"]


@pytest.mark.parametrize("value, shown", [("true", "True"), ("False", "False"),
                                          ("TRUE", "True")])
def test_boolean_option_values_in_any_case(value, shown, capsys):
    assert cli.main(["minimize", "rosenbrock", "--maxiter", "5",
                     "--option", f"amsgrad={value}"]) == 0
    assert f"'amsgrad': {shown}" in capsys.readouterr().out


def test_whole_number_floats_for_integer_options(capsys):
    assert cli.main(["minimize", "rosenbrock", "--maxiter", "1e1", "--dim", "2.0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nit"] == 10
    assert exit_code(["minimize", "rosenbrock", "--maxiter", "1.5"]) == 2
    assert "--maxiter: expected a whole number, got '1.5'" in capsys.readouterr().err


def test_json_output_is_valid_json_with_null_for_nan_and_inf(capsys):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    # a start where Rosenbrock overflows: fun and jac are inf
    assert cli.main(["minimize", "rosenbrock", "--x0", "1e200,1e200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert result["status"] == 3 and result["fun"] is None and result["jac"] == [None, None]
    assert result["x"] == [1e200, 1e200]


def test_function_names_in_any_case(capsys):
    assert cli.main(["minimize", "Rosenbrock", "--maxiter", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nit"] == 3
