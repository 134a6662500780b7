"""Kingma & Ba (2014), section 6.4 in miniature: why Adam corrects the bias of its moments.

Adam's moment estimates start at zero, so early on they are biased towards zero:
``m_t ~ (1 - beta1^t) E[g]`` and ``v_t ~ (1 - beta2^t) E[g^2]``. Adam divides them by those factors.
Without the correction, the step ``lr * m_t / sqrt(v_t)`` is about
``lr * (1 - beta1^t) / sqrt(1 - beta2^t)`` times the corrected one; with beta2 close to 1 that is
``lr * (1 - beta1^t) / sqrt(t (1 - beta2))`` in the first steps, up to 30x the corrected step for
beta2 = 0.9999 and 100x for 0.99999. The paper (section 6.4, figure 4) finds training unstable
without the correction exactly when beta2 is close to 1.

Here both variants run on two small problems of :mod:`adamnb.problems.functions`, Rosenbrock and Easom, from
their standard starts, with lr = 0.1, beta1 = 0.9 and beta2 in {0.99, 0.999, 0.9999, 0.99999}:

* **with** bias correction: ``adamnb.Adam``, the library's optimizer;
* **without**: :class:`AdamWithoutBiasCorrection`, this experiment's own NumPy variant (adamnb, like
  torch, always corrects). With ``bias_correction=True`` the same few lines reproduce
  ``adamnb.Adam``, which the tests check, so the correction is the only difference.

What the committed run shows (``results/bias_correction/summary.json``): without correction the
first steps are larger, 3x the corrected one at beta2 = 0.999, 10x at 0.9999 and 32x at 0.99999,
but they do harm only when beta2 is closest to 1. On Rosenbrock the uncorrected run stalls far
from the minimum (f - f* = 0.85 after 3000 steps) only at beta2 = 0.99999, its huge first steps
having inflated the slowly forgetting second moment; at beta2 = 0.99 and 0.999 it even ends lower
than the corrected run (at 0.999: 4e-29 against 8e-8). On Easom the uncorrected first steps throw
x off the only bump onto the plateau, where the gradient vanishes and the run stalls for good
(f - f* = 1), for beta2 = 0.9999 and 0.99999. With correction the first step is lr * sqrt(2)
whatever beta2, and every run reaches its minimum except Rosenbrock at beta2 = 0.99 (f - f* =
0.009 after 3000 steps, uncorrected 0.007). That is the paper's finding in miniature: the
correction matters when beta2 is close to 1 (its section 6.4 uses 0.999 and above).

Outputs, under ``./results/bias_correction/`` (or ``--out DIR``): ``bias_correction.png`` (per
problem: step lengths, f - f* and the paths at the largest beta2) and ``summary.json``. Each
(problem, beta2) pair is one cell of a sweep (:mod:`adamnb.sweep`).

Run: ``adamnb experiment bias-correction [--out DIR] [--workers N | --scheduler ADDRESS]`` (or
``python -m adamnb.experiments.bias_correction``); a few seconds. ``--quick`` is accepted for
uniformity and computes the same, but writes to ``./results/bias_correction/quick/``.
"""

import math
import sys
import time

import numpy as np

import adamnb
from adamnb import plot
from adamnb import sweep as sweeps
from adamnb.experiments import command, conclude, default_out, quick_note, run_cells
from adamnb.problems.functions import get

NAME = "bias-correction"
FOLDER = "bias_correction"
#: What ``adamnb experiment bias-correction --help`` says the experiment does.
DESCRIPTION = ("Kingma & Ba (2014) section 6.4 in miniature: with beta2 close to 1, Adam without "
               "bias correction takes huge early steps and stalls; with it, it does not. Writes "
               "bias_correction.png and summary.json.")

PROBLEMS = ("rosenbrock", "easom")
LR, BETA1, EPS = 0.1, 0.9, 1e-8
BETA2S = (0.99, 0.999, 0.9999, 0.99999)
STEPS = 3000

#: Fixed frames for the path panels: on Easom the uncorrected run drifts far over the endless
#: plateau, and a frame that held all of it would shrink the bump to a dot.
PATH_FRAMES = {"easom": ((1.5, 6.5), (1.5, 6.5))}

WITH, WITHOUT = "with bias correction (adamnb.Adam)", "without (this experiment's variant)"


class AdamWithoutBiasCorrection:
    r"""This experiment's own Adam variant, in NumPy: Adam without its bias corrections.

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
        x_t = x_{t-1} - \eta\, m_t / (\sqrt{v_t} + \epsilon)

    With ``bias_correction=True`` it is torch's (and adamnb's) Adam,

    .. math::

        x_t = x_{t-1} - \frac{\eta}{1-\beta_1^t}\, m_t / (\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon),

    computed in the same order, so that comparing the two switches off nothing but the correction.
    Not part of adamnb; same ``step(x, g)`` interface as :class:`adamnb.Adam`.
    """

    def __init__(self, lr=LR, beta1=BETA1, beta2=0.999, eps=EPS, bias_correction=False):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.bias_correction = bias_correction
        self.t = 0
        self.m = self.v = None

    def step(self, x, g):
        """Update ``x`` in place given the gradient ``g`` at ``x``."""
        if self.m is None:
            self.m, self.v = np.zeros_like(x), np.zeros_like(x)
        self.t += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * g
        self.v *= self.beta2
        self.v += (1 - self.beta2) * g * g
        if self.bias_correction:
            denominator = np.sqrt(self.v) / math.sqrt(1 - self.beta2 ** self.t) + self.eps
            x -= (self.lr / (1 - self.beta1 ** self.t)) * (self.m / denominator)
        else:
            x -= self.lr * (self.m / (np.sqrt(self.v) + self.eps))


def trace(optimizer, tf, steps=STEPS):
    """Run ``optimizer`` on test function ``tf`` from its start; the iterates and f values.

    Stops early, keeping what it has, if f or the gradient stops being finite.
    """
    x = np.array(tf.x0, dtype=float)
    path, values = [x.copy()], [tf.fun(x)]
    for _ in range(steps):
        g = tf.grad(x)
        if not np.isfinite(g).all():
            break
        optimizer.step(x, g)
        f = tf.fun(x)
        if not math.isfinite(f):
            break
        path.append(x.copy())
        values.append(f)
    return np.array(path), np.array(values)


def compare(tf, beta2, steps=STEPS):
    """Both variants on ``tf`` at ``beta2``: ``{label: (path, f values)}``."""
    return {WITH: trace(adamnb.Adam(lr=LR, beta1=BETA1, beta2=beta2, eps=EPS), tf, steps),
            WITHOUT: trace(AdamWithoutBiasCorrection(LR, BETA1, beta2, EPS), tf, steps)}


def step_lengths(path):
    """The length of every step of a path."""
    return np.linalg.norm(np.diff(path, axis=0), axis=1)


def outcome(tf, path, values):
    """The numbers a run is judged by: its largest step, how high f went, where it ended."""
    steps = step_lengths(path)
    gaps = values - tf.fmin
    return {"largest_step": float(steps.max()), "largest_step_at": int(steps.argmax()) + 1,
            "largest_gap": float(gaps.max()), "final_gap": max(float(gaps[-1]), 0.0),
            "distance": tf.nearest_minimizer_distance(path[-1]), "steps": int(steps.size)}


def compare_cell(cell):
    """One sweep cell ``{"problem", "beta2"}``: both variants' paths and f values."""
    traces = compare(get(cell["problem"]), cell["beta2"])
    return {key: {"path": traces[label][0], "values": traces[label][1]}
            for key, label in (("with", WITH), ("without", WITHOUT))}


def run(out=None, quick=False, plots=True, workers=None, scheduler=None):
    """Run both variants on every problem and beta2; write the outputs under ``out``; the summary.

    ``quick`` changes nothing in the computation (the experiment takes seconds); it is accepted
    so that every experiment takes the same options, and sends the outputs to the quick folder.
    ``workers`` and ``scheduler`` as in :func:`adamnb.sweep.sweep`.
    """
    started = time.perf_counter()
    out = default_out(FOLDER, quick, out)
    cells = sweeps.grid(problem=PROBLEMS, beta2=BETA2S)
    records = run_cells(compare_cell, cells, out=out, workers=workers, scheduler=scheduler,
                        desc=NAME)
    traces = {(cell["problem"], cell["beta2"]): {
        label: (record[key]["path"], record[key]["values"])
        for key, label in (("with", WITH), ("without", WITHOUT))}
        for cell, record in zip(cells, records)}
    summary = {
        "experiment": NAME,
        "quick": quick,
        "problems": list(PROBLEMS),
        "lr": LR, "beta1": BETA1, "eps": EPS, "beta2s": list(BETA2S), "steps": STEPS,
        "variants": {"with": WITH, "without": WITHOUT},
        "results": {name: {str(beta2): {key: outcome(get(name), *traces[name, beta2][label])
                                        for key, label in (("with", WITH), ("without", WITHOUT))}
                           for beta2 in BETA2S}
                    for name in PROBLEMS},
    }
    if plots:
        save_plot(traces, out / "bias_correction.png", quick)
    return conclude(out, summary, started)


def save_plot(traces, path, quick=False):
    """Per problem (one row each): step lengths, f - f* for every beta2, and the two paths."""
    figure, axes = plot.panel_grid(3 * len(PROBLEMS), ncols=3, panel_size=(4.3, 3.3))
    largest = BETA2S[-1]
    beta2_colors = {beta2: f"C{index}" for index, beta2 in enumerate(BETA2S)}
    variant_styles = {WITH: dict(linestyle="-"), WITHOUT: dict(linestyle="--")}
    for row, name in enumerate(PROBLEMS):
        tf = get(name)
        step_ax, gap_ax, path_ax = axes[3 * row:3 * row + 3]
        for label in (WITH, WITHOUT):
            trajectory, _ = traces[name, largest][label]
            steps = step_lengths(trajectory)
            step_ax.loglog(np.arange(1, steps.size + 1), np.maximum(steps, 1e-300),
                           label=label, color="tab:blue" if label == WITH else "tab:red")
        step_ax.axhline(LR * math.sqrt(tf.n), color="0.4", linestyle=":", linewidth=1.0,
                        label="lr * sqrt(n): Adam's usual step bound")
        step_ax.set_ylim(1e-8, 30.0)
        step_ax.set_xlabel("step t")
        step_ax.set_ylabel("step length |x_t - x_{t-1}|")
        step_ax.set_title(f"{name}: step lengths, beta2 = {largest}", fontsize="medium")
        step_ax.legend(fontsize="x-small", loc="lower left")
        # keys name the run in the note of one that leaves the panel
        keys = {(beta2, label): f"{'with' if label == WITH else 'without'} correction, "
                                f"beta2 = {beta2}"
                for beta2 in BETA2S for label in (WITH, WITHOUT)}
        runs = {key: traces[name, beta2][label][1] for (beta2, label), key in keys.items()}
        styles = {key: dict(color=beta2_colors[beta2], **variant_styles[label])
                  for (beta2, label), key in keys.items()}
        plot.plot_convergence(runs, fmin=tf.fmin, ax=gap_ax, styles=styles, legend=False,
                              title=f"{name}: f - f* (solid: with, dashed: without)",
                              ylabel="f - f*")
        gap_ax.title.set_fontsize("medium")
        handles = [gap_ax.plot([], [], color=color, label=f"beta2 = {beta2}")[0]
                   for beta2, color in beta2_colors.items()]
        gap_ax.legend(handles=handles, fontsize="x-small", loc="lower left")
        paths = {label: traces[name, largest][label][0] for label in (WITH, WITHOUT)}
        if name in PATH_FRAMES:
            xlim, ylim = PATH_FRAMES[name]
        else:
            xlim, ylim = plot.trajectory_window(paths.values(), tf.minimizers, tf.domain)
        plot.plot_contour(tf.fun, xlim, ylim, path_ax, fmin=tf.fmin, levels=14, resolution=160)
        for label, points in paths.items():
            plot.plot_trajectory(points, path_ax, label=label, minimizers=tf.minimizers,
                                 color="tab:blue" if label == WITH else "tab:red",
                                 step_marker_size=2.0)
        end = paths[WITHOUT][-1]
        if not (xlim[0] <= end[0] <= xlim[1] and ylim[0] <= end[1] <= ylim[1]):
            path_ax.annotate(f"without: ends at ({end[0]:.3g}, {end[1]:.3g}),\noff this frame",
                             xy=(0.97, 0.03), xycoords="axes fraction", ha="right", va="bottom",
                             fontsize="x-small", color="tab:red")
        path_ax.set_xlabel("x1")
        path_ax.set_ylabel("x2")
        path_ax.set_title(f"{name}: paths, beta2 = {largest} (o start, x end)",
                          fontsize="medium")
        path_ax.legend(fontsize="x-small", loc="upper left")
    figure.suptitle(f"Kingma & Ba (2014) section 6.4 in miniature: Adam with and without bias "
                    f"correction, lr = {LR}, beta1 = {BETA1}{quick_note(quick)}", fontsize="medium")
    plot.save_figure(figure, path, palette=True)


def report(summary):
    """The results in words (what the command prints)."""
    lines = [f"Adam with and without bias correction, lr = {LR}, beta1 = {BETA1}, "
             f"{STEPS} steps from the standard start:",
             f"{'problem':11s} {'beta2':>8s} | {'largest step':>12s} {'final f - f*':>12s} "
             f"(with) | {'largest step':>12s} {'final f - f*':>12s} (without)"]
    for name, by_beta2 in summary["results"].items():
        for beta2, variants in by_beta2.items():
            w, wo = variants["with"], variants["without"]
            lines.append(f"{name:11s} {beta2:>8s} | {w['largest_step']:12.3g} "
                         f"{w['final_gap']:12.2e}        | {wo['largest_step']:12.3g} "
                         f"{wo['final_gap']:12.2e}")
    return "\n".join(lines)


main = command(NAME, FOLDER, run, report, DESCRIPTION,
               "accepted for uniformity; this experiment is always quick")


if __name__ == "__main__":
    sys.exit(main())
