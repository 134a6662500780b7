"""Reddi, Kale & Kumar (2018): on a simple online problem Adam goes to the worst point, AMSGrad not.

The problem ("On the Convergence of Adam and Beyond", ICLR 2018, section 5): at step t the loss is

    f_t(x) = 1010 x   if t mod 101 == 1,
    f_t(x) = -10 x    otherwise,

on the interval [-1, 1]. Over each period of 101 steps the losses add up to 1010 x - 100 * 10 x =
10 x, so the best fixed point is x = -1, and x = +1 is the worst. Adam sees one large gradient
(+1010) and a hundred small ones (-10) per period. With beta2 = 0.99 its second moment v forgets
the large gradient within the period, so the small gradients are divided by a small sqrt(v) and
their steps towards +1 add up to more than the one large step towards -1: x drifts to +1. AMSGrad
divides by the largest v seen so far, which keeps the memory of the large gradient, so the small
steps stay small and x goes to -1.

Both methods are adamnb's stateful optimizer, ``adamnb.Adam(lr, beta1=0.9, beta2=0.99)`` and the
same with ``amsgrad=True``, with the paper's step size alpha / sqrt(t)
(``adamnb.optim.schedules.InverseSqrt``), starting at x = 0 and projected back onto [-1, 1] after every
step. The regret of the first T steps is R_T = sum_t f_t(x_t) - f_t(-1), x_t being the point played
at step t; an algorithm that learns has R_T / T -> 0.

Outputs, under ``./results/reddi/`` (``./results/reddi/quick/`` with ``--quick``, or ``--out
DIR``): ``reddi.png`` (x_t and R_t / t against t) and ``summary.json``. The two methods are the
two cells of a sweep (:mod:`adamnb.sweep`).

Run: ``adamnb experiment reddi [--quick] [--out DIR] [--workers N | --scheduler ADDRESS]`` (or
``python -m adamnb.experiments.reddi_counterexample``): 100,000 steps (a few seconds), or 20,000
with ``--quick``.
"""

import sys
import time

import numpy as np
from matplotlib.figure import Figure

import adamnb
from adamnb import plot
from adamnb.experiments import command, conclude, default_out, progress, quick_note, run_cells
from adamnb.optim.schedules import InverseSqrt

NAME = "reddi"
FOLDER = "reddi"

#: The problem: a large gradient once per period, a small one of the other sign otherwise.
PERIOD, LARGE, SMALL = 101, 1010.0, -10.0
LOWER, UPPER = -1.0, 1.0
#: The paper's moment decay rates, and our step size alpha / sqrt(t) and start.
BETA1, BETA2 = 0.9, 0.99
ALPHA = 0.5
X0 = 0.0
STEPS, QUICK_STEPS = 100_000, 20_000
#: What ``adamnb experiment reddi --help`` says the experiment does.
DESCRIPTION = ("Reddi, Kale & Kumar (2018): on f_t(x) = 1010x (t mod 101 == 1) else -10x over "
               "[-1, 1], Adam drifts to x = +1, the worst point; AMSGrad goes to -1. Writes "
               "reddi.png and summary.json.")

VARIANTS = {"Adam": False, "AMSGrad": True}  # label -> amsgrad

#: Average regret per step of playing x = +1 for ever: (LARGE + (PERIOD - 1) * SMALL) * 2 / PERIOD.
WORST_POINT_REGRET = (LARGE + (PERIOD - 1) * SMALL) * (UPPER - LOWER) / PERIOD


def gradient(t):
    """f_t'(x), the same for every x since f_t is linear: 1010 once per period, else -10."""
    return LARGE if t % PERIOD == 1 else SMALL


def play(amsgrad, steps, alpha=ALPHA):
    """Run the online problem for ``steps`` steps; returns (x_t played, average regret R_t / t).

    ``x_t`` is the point played at step t = 1..steps, before that step's update.
    """
    optimizer = adamnb.Adam(lr=InverseSqrt(alpha), beta1=BETA1, beta2=BETA2, amsgrad=amsgrad)
    x = np.array([X0])
    g = np.empty(1)
    played = np.empty(steps)
    loss_gap = np.empty(steps)  # f_t(x_t) - f_t(-1) = c_t (x_t + 1)
    for t in progress(range(1, steps + 1), desc="AMSGrad" if amsgrad else "Adam",
                      unit="step", mininterval=0.5):
        c = gradient(t)
        played[t - 1] = x[0]
        loss_gap[t - 1] = c * (x[0] - LOWER)
        g[0] = c
        optimizer.step(x, g)
        np.clip(x, LOWER, UPPER, out=x)
    average_regret = np.cumsum(loss_gap) / np.arange(1, steps + 1)
    return played, average_regret


def play_cell(cell):
    """One sweep cell ``{"variant", "amsgrad", "steps"}``: the summary numbers of the run and
    its trace once per period (what the plot draws)."""
    steps = cell["steps"]
    played, regret = play(cell["amsgrad"], steps)
    tail = slice(steps - steps // 10, steps)
    # One point in 101 is the large-gradient step; drawing every point would draw the period's
    # saw-tooth as a solid band, so the plot shows both curves once per period (at its last step).
    period_ends = np.arange(PERIOD, steps + 1, PERIOD)
    return {"final_x": float(played[-1]), "mean_x_last_tenth": float(played[tail].mean()),
            "average_regret": float(regret[-1]), "t": period_ends,
            "x": played[period_ends - 1], "regret": regret[period_ends - 1]}


def run(out=None, quick=False, plots=True, workers=None, scheduler=None):
    """Run both methods, write ``summary.json`` (and ``reddi.png``) under ``out``; the summary.

    The summary holds, per method, the final x, the mean x over the last tenth of the steps and the
    final average regret R_T / T. ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    steps = QUICK_STEPS if quick else STEPS
    cells = [{"variant": label, "amsgrad": amsgrad, "steps": steps}
             for label, amsgrad in VARIANTS.items()]
    records = run_cells(play_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    traces = {cell["variant"]: record for cell, record in zip(cells, records)}
    summary = {
        "experiment": NAME,
        "quick": quick,
        "problem": f"f_t(x) = {LARGE:g} x if t mod {PERIOD} == 1 else {SMALL:g} x, "
                   f"x in [{LOWER:g}, {UPPER:g}]",
        "best_point": LOWER,
        "worst_point": UPPER,
        "steps": steps,
        "beta1": BETA1,
        "beta2": BETA2,
        "step_size": f"{ALPHA:g} / sqrt(t)",
        "x0": X0,
        "results": {label: {key: trace[key]
                            for key in ("final_x", "mean_x_last_tenth", "average_regret")}
                    for label, trace in traces.items()},
    }
    if plots:
        save_plot(traces, out / "reddi.png", quick)
    return conclude(out, summary, started)


def save_plot(traces, path, quick=False):
    """x_t and the average regret against t, both methods, log-scaled step axis.

    ``traces[label]`` holds ``t`` (the last step of each period), ``x`` and ``regret`` there.
    """
    figure = Figure(figsize=(10.0, 3.8), layout="constrained")
    position, regret_ax = figure.subplots(1, 2)
    colors = {"Adam": "tab:red", "AMSGrad": "tab:blue"}
    for label, trace in traces.items():
        position.plot(trace["t"], trace["x"], color=colors[label], label=label)
        regret_ax.plot(trace["t"], trace["regret"], color=colors[label], label=label)
    position.axhline(LOWER, color="0.3", linestyle="--", linewidth=1.0)
    position.axhline(UPPER, color="0.3", linestyle=":", linewidth=1.0)
    position.text(1.5 * PERIOD, LOWER + 0.05, "best point x = -1", fontsize="small")
    position.text(1.5 * PERIOD, UPPER - 0.12, "worst point x = +1", fontsize="small")
    position.set_xscale("log")
    position.set_ylim(LOWER - 0.1, UPPER + 0.1)
    position.set_xlabel("step t")
    position.set_ylabel("x_t (once per period of 101 steps)")
    position.set_title("Where the iterate goes")
    position.legend(loc="center left")
    regret_ax.set_xscale("log")
    regret_ax.set_yscale("log")
    regret_ax.axhline(WORST_POINT_REGRET, color="0.3", linestyle=":", linewidth=1.0)
    regret_ax.text(1.5 * PERIOD, WORST_POINT_REGRET * 1.25, "always playing the worst point x = +1",
                   fontsize="small")
    regret_ax.set_xlabel("step t")
    regret_ax.set_ylabel("average regret R_t / t (once per period)")
    regret_ax.set_title("Average regret (-> 0 when the method learns)")
    regret_ax.legend()
    for ax in (position, regret_ax):
        ax.grid(True, alpha=0.3)
    figure.suptitle(f"Reddi et al. (2018): f_t(x) = 1010x if t mod 101 = 1 else -10x on [-1, 1]; "
                    f"beta1 = {BETA1}, beta2 = {BETA2}, step {ALPHA:g}/sqrt(t){quick_note(quick)}",
                    fontsize="medium")
    plot.save_figure(figure, path, palette=True)


def report(summary):
    """The results in words (what the command prints)."""
    lines = [f"Reddi et al. (2018), {summary['steps']} steps, best point x = -1:"]
    for label, numbers in summary["results"].items():
        lines.append(f"  {label:8s} final x = {numbers['final_x']:+.4f}   mean x over the last "
                     f"tenth = {numbers['mean_x_last_tenth']:+.4f}   average regret R_T/T = "
                     f"{numbers['average_regret']:.4f}")
    return "\n".join(lines)


main = command(NAME, FOLDER, run, report, DESCRIPTION, f"{QUICK_STEPS} steps instead of {STEPS}")


if __name__ == "__main__":
    sys.exit(main())
