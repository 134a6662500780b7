"""Learning-rate schedules, accepted wherever ``lr`` is.

A schedule maps the 1-based step number ``t`` to the learning rate of that step. Any callable
``lr(t)`` is a schedule; the classes here cover the common ones and print readably. Values are
checked at every step: a schedule that returns a negative, NaN or infinite rate raises ValueError
naming the step.

======================  ===================================================================
``Constant(lr)``        :math:`\\eta_t = \\eta`
``InverseSqrt(alpha)``  :math:`\\eta_t = \\alpha / \\sqrt{t}` (Kingma & Ba 2014, section 6.1)
``Exponential(lr, g)``  :math:`\\eta_t = \\eta\\, \\gamma^{t-1}`
``Step(lr, k, g)``      :math:`\\eta_t = \\eta\\, \\gamma^{\\lfloor (t-1)/k \\rfloor}`
``Cosine(lr, T, m)``    :math:`\\eta_t = m + (\\eta - m)(1 + \\cos(\\pi \\min(t-1, T)/T))/2`
``Warmup(base, w)``     :math:`\\eta_t = \\mathrm{base}(t)\\, \\min(1, t/w)` (linear warm-up)
======================  ===================================================================

and torch.optim.lr_scheduler's schedulers, each giving at ``t`` the rate torch uses at its t-th
optimizer step (the scheduler stepped once after every optimizer step), i.e. torch's value at
``last_epoch = t - 1``:

==================================================================  ===============================
``MultiStep(lr, milestones, gamma)``                                ``MultiStepLR``
``Linear(lr, start_factor, end_factor, total_iters)``               ``LinearLR``
``Polynomial(lr, total_iters, power)``                              ``PolynomialLR``
``CosineWarmRestarts(lr, T_0, T_mult, eta_min)``                    ``CosineAnnealingWarmRestarts``
``Cyclic(base_lr, max_lr, step_size_up, step_size_down, mode)``     ``CyclicLR``
``OneCycle(max_lr, total_steps, pct_start, anneal_strategy, ...)``  ``OneCycleLR``
``Sequential(schedules, milestones)``                               ``SequentialLR``
``ReduceLROnPlateau(lr, mode, factor, patience, ...)``              ``ReduceLROnPlateau``
==================================================================  ===============================

All but the last are *pure*: their rates depend on ``t`` alone, and the drivers compute them in
vectorised blocks. :class:`ReduceLROnPlateau` is *stateful*: its rate depends on the objective
values it has been given (:meth:`ReduceLROnPlateau.step`). :func:`adamnb.minimize` gives it the
objective after every step (the mean over each epoch for :func:`adamnb.minibatches` streams); with
an optimizer class you call ``optimizer.schedule.step(metric)`` yourself, as torch's
``scheduler.step(metric)``. Its state is saved with the optimizer's (``state_dict``,
:func:`adamnb.optim.save_state_dict`) and restored bit for bit.
"""

import copy
import math

import numpy as np

__all__ = ["Schedule", "Constant", "InverseSqrt", "Exponential", "Step", "Cosine", "Warmup",
           "MultiStep", "Linear", "Polynomial", "CosineWarmRestarts", "Cyclic", "OneCycle",
           "Sequential", "ReduceLROnPlateau", "as_schedule", "schedule_values", "checked_rate",
           "checked_rates", "fresh_copy"]


def _positive(name, value, allow_zero=True):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name}: {value!r}; expected a real number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid {name}: {value!r}; expected a finite number {bound}")
    return value


def _count(name, value, low=1):
    expected = "a positive integer" if low == 1 else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ValueError(f"Invalid {name}: {value!r}; expected {expected}")
    if int(value) < low:
        raise ValueError(f"Invalid {name}: {value!r}; expected {expected}")
    return int(value)


def _fraction(name, value, low=0.0, high=1.0, low_open=False):
    number = _positive(name, value) if low >= 0 else float(value)
    if number < low or number > high or (low_open and number == low):
        bound = "<" if low_open else "<="
        raise ValueError(f"Invalid {name}: {value!r}; expected {low:g} {bound} {name} <= "
                         f"{high:g}")
    return number


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"Invalid {name}: {value!r}; expected one of "
                         f"{', '.join(map(repr, choices))}")
    return value


def _milestones(name, value, strictly_increasing):
    """A list of step counts (ints >= 0 for torch's last_epoch, or >= 1 for milestones between
    schedules), sorted."""
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"Invalid {name}: {value!r}; expected a list of integers") from None
    low = 1 if strictly_increasing else 0
    items = [_count(name, item, low=low) for item in items]
    if strictly_increasing and any(b <= a for a, b in zip(items, items[1:])):
        raise ValueError(f"Invalid {name}: {value!r}; expected strictly increasing integers")
    return items if strictly_increasing else sorted(items)


def _pure_only(name, schedule):
    if getattr(schedule, "needs_objective", False):
        raise ValueError(f"{name} cannot hold {type(schedule).__name__}, whose rate follows the "
                         "objective: minimize feeds only a schedule given as lr itself (torch's "
                         "SequentialLR refuses ReduceLROnPlateau too)")
    return schedule


class Schedule:
    """Base of the built-in schedules: ``schedule(t)`` is the learning rate of step t >= 1.

    Subclasses define ``values(t)`` over an integer array of steps; the scalar call uses the same
    NumPy arithmetic, so a rate is the same bits whichever way a driver asks for it.

    ``pure`` says the rates depend on ``t`` alone, so the drivers may compute them for a block of
    steps ahead; a schedule built on a user's callable (``Warmup(my_function, 10)``) is not pure,
    and is then called once per step, at that step. ``needs_objective`` marks a schedule whose
    rate follows the objective (:class:`ReduceLROnPlateau`): it has a ``step(metric)`` method,
    and state beside its arguments (``state()``, ``load_state(state)``), which :meth:`to_dict`
    stores. A built-in schedule's public attributes are its constructor's arguments; state lives
    in attributes whose names begin with ``_``.
    """

    pure = True
    needs_objective = False

    def values(self, t):
        raise NotImplementedError

    def __call__(self, t):
        """The learning rate of step ``t``.

        Raises
        ------
        ValueError
            ``t`` is not a whole number >= 1 (steps are 1-based: the first step is t = 1).
        """
        if isinstance(t, (bool, np.bool_)) or not (isinstance(t, (int, np.integer)) or (
                isinstance(t, (float, np.floating)) and float(t).is_integer())) or t < 1:
            raise ValueError(f"Invalid step t: {t!r}; schedules take the 1-based step number, "
                             "a whole number t >= 1")
        return float(self.values(np.array([t], dtype=np.int64))[0])

    def arguments(self):
        """The constructor's arguments, by name: ``type(self)(**arguments())`` is this schedule
        (at its initial state)."""
        return {key: value for key, value in vars(self).items() if not key.startswith("_")}

    def __repr__(self):
        fields = ", ".join(f"{key}={value!r}" for key, value in self.arguments().items())
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def to_dict(self):
        """The schedule as plain JSON-ready data: ``{"type": name, <constructor arguments>}``.

        A built-in schedule's attributes are its constructor's arguments, so
        :meth:`from_dict` rebuilds an equal schedule (the same rates, bit for bit).

        Raises
        ------
        TypeError
            An argument is not a number, string, None, list or built-in schedule (a user's
            callable inside ``Warmup``, say).
        """
        data = {"type": type(self).__name__,
                **{name: _to_data(name, value) for name, value in self.arguments().items()}}
        if self.needs_objective:
            data["state"] = {name: _to_data(name, value) for name, value in self.state().items()}
        return data

    @staticmethod
    def from_dict(data):
        """The schedule :meth:`to_dict` described.

        Raises
        ------
        ValueError
            ``data`` names no built-in schedule.
        """
        data = dict(data)
        name = data.pop("type", None)
        state = data.pop("state", None)
        classes = {cls.__name__: cls for cls in _subclasses(Schedule)}
        if name not in classes:
            raise ValueError(f"unknown schedule type {name!r}; expected one of "
                             f"{', '.join(sorted(classes))}")
        schedule = classes[name](**{key: _from_data(value) for key, value in data.items()})
        if state is not None:
            schedule.load_state(state)
        return schedule


class Constant(Schedule):
    """The same rate at every step."""

    def __init__(self, lr):
        self.lr = _positive("lr", lr)

    def values(self, t):
        return np.full(np.shape(t), self.lr)


class InverseSqrt(Schedule):
    """alpha / sqrt(t), the decay of Kingma & Ba's logistic-regression experiment."""

    def __init__(self, alpha):
        self.alpha = _positive("alpha", alpha)

    def values(self, t):
        return self.alpha / np.sqrt(t)


class Exponential(Schedule):
    """lr * gamma ** (t - 1), as torch's ExponentialLR stepped once per update."""

    def __init__(self, lr, gamma):
        self.lr = _positive("lr", lr)
        self.gamma = _positive("gamma", gamma)

    def values(self, t):
        return self.lr * self.gamma ** (np.asarray(t) - 1.0)


class Step(Schedule):
    """lr * gamma ** floor((t - 1) / step_size), as torch's StepLR stepped once per update."""

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr = _positive("lr", lr)
        self.step_size = _count("step_size", step_size)
        self.gamma = _positive("gamma", gamma)

    def values(self, t):
        return self.lr * self.gamma ** ((np.asarray(t) - 1) // self.step_size).astype(float)


class Cosine(Schedule):
    """Cosine annealing from lr down to min_lr over total_steps, then constant at min_lr."""

    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr = _positive("lr", lr)
        self.total_steps = _count("total_steps", total_steps)
        self.min_lr = _positive("min_lr", min_lr)

    def values(self, t):
        progress = np.minimum(np.asarray(t) - 1, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + np.cos(np.pi * progress))


class Warmup(Schedule):
    """Linear warm-up: base(t) * min(1, t / warmup_steps); base is a rate or a schedule."""

    def __init__(self, base, warmup_steps):
        self.base = _pure_only("Warmup", base) if callable(base) else Constant(base)
        self.warmup_steps = _count("warmup_steps", warmup_steps)

    @property
    def pure(self):
        return isinstance(self.base, Schedule) and self.base.pure

    def values(self, t):
        return schedule_values(self.base, t) * np.minimum(1.0, np.asarray(t) / self.warmup_steps)


class MultiStep(Schedule):
    """lr * gamma ** (number of milestones <= t - 1), as torch's MultiStepLR.

    ``milestones`` are torch's: counts of steps taken (``last_epoch``), in any order; a milestone
    given twice decays twice.
    """

    def __init__(self, lr, milestones, gamma=0.1):
        self.lr = _positive("lr", lr)
        self.milestones = _milestones("milestones", milestones, strictly_increasing=False)
        self.gamma = _positive("gamma", gamma)

    def values(self, t):
        passed = np.searchsorted(np.asarray(self.milestones, dtype=np.int64),
                                 np.asarray(t) - 1, side="right")
        return self.lr * self.gamma ** passed.astype(float)


class Linear(Schedule):
    """lr * (start_factor + (end_factor - start_factor) min(t - 1, total_iters) / total_iters),
    as torch's LinearLR."""

    def __init__(self, lr, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        self.lr = _positive("lr", lr)
        self.start_factor = _fraction("start_factor", start_factor, low_open=True)
        self.end_factor = _fraction("end_factor", end_factor)
        self.total_iters = _count("total_iters", total_iters)

    def values(self, t):
        done = np.minimum(np.asarray(t) - 1, self.total_iters)
        return self.lr * (self.start_factor + (self.end_factor - self.start_factor) * done
                          / self.total_iters)


class Polynomial(Schedule):
    """lr * (1 - min(t - 1, total_iters) / total_iters) ** power, as torch's PolynomialLR."""

    def __init__(self, lr, total_iters=5, power=1.0):
        self.lr = _positive("lr", lr)
        self.total_iters = _count("total_iters", total_iters)
        self.power = _positive("power", power)

    def values(self, t):
        done = np.minimum(np.asarray(t) - 1, self.total_iters)
        return self.lr * (1.0 - done / self.total_iters) ** self.power


class CosineWarmRestarts(Schedule):
    """Cosine annealing restarted every T_i steps, T_i = T_0 T_mult**i, as torch's
    CosineAnnealingWarmRestarts (SGDR, Loshchilov & Hutter, 2017)."""

    def __init__(self, lr, T_0, T_mult=1, eta_min=0.0):  # noqa: N803 (torch's names)
        self.lr = _positive("lr", lr)
        self.T_0 = _count("T_0", T_0)
        self.T_mult = _count("T_mult", T_mult)
        self.eta_min = _positive("eta_min", eta_min)

    def _position(self, done):
        """(T_cur, T_i) after ``done`` steps: steps since the last restart, and the period."""
        if self.T_mult == 1:
            return done % self.T_0, np.full(done.shape, self.T_0)
        starts, period = [0], self.T_0  # integer arithmetic, as torch's counters
        while starts[-1] <= (done.max() if done.size else 0):
            starts.append(starts[-1] + period)
            period *= self.T_mult
        starts = np.array(starts, dtype=np.int64)
        cycle = np.searchsorted(starts, done, side="right") - 1
        return done - starts[cycle], self.T_0 * self.T_mult ** cycle

    def values(self, t):
        t_cur, t_i = self._position(np.asarray(t, dtype=np.int64) - 1)
        return self.eta_min + (self.lr - self.eta_min) * (
            1.0 + np.cos(math.pi * t_cur / t_i)) / 2


class Cyclic(Schedule):
    """A triangular cycle between base_lr and max_lr, as torch's CyclicLR (Smith, 2017).

    ``mode`` "triangular" keeps the amplitude, "triangular2" halves it every cycle, "exp_range"
    scales it by ``gamma ** (t - 1)``. torch's ``scale_fn`` and momentum cycling are not
    offered (a schedule gives the learning rate only).
    """

    def __init__(self, base_lr, max_lr, step_size_up=2000, step_size_down=None,
                 mode="triangular", gamma=1.0):
        self.base_lr = _positive("base_lr", base_lr)
        self.max_lr = _positive("max_lr", max_lr)
        self.step_size_up = _positive("step_size_up", step_size_up, allow_zero=False)
        self.step_size_down = (None if step_size_down is None
                               else _positive("step_size_down", step_size_down))
        self.mode = _choice("mode", mode, ("triangular", "triangular2", "exp_range"))
        self.gamma = _positive("gamma", gamma)

    def values(self, t):
        done = np.asarray(t, dtype=float) - 1.0
        up = self.step_size_up
        total = up + (up if self.step_size_down is None else self.step_size_down)
        ratio = up / total
        cycle = np.floor(1 + done / total)
        x = 1.0 + done / total - cycle
        with np.errstate(divide="ignore", invalid="ignore"):  # ratio 1: no way down
            scale_factor = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        height = (self.max_lr - self.base_lr) * scale_factor
        if self.mode == "triangular":
            return self.base_lr + height * 1.0
        if self.mode == "triangular2":
            return self.base_lr + height * (1 / (2.0 ** (cycle - 1)))
        return self.base_lr + height * self.gamma ** done


class OneCycle(Schedule):
    """The 1cycle policy (Smith & Topin, 2019), as torch's OneCycleLR: from max_lr / div_factor
    up to max_lr over the first pct_start of total_steps, then down to
    max_lr / (div_factor * final_div_factor) (three_phase: back to the start first).

    torch's OneCycleLR gives rates for steps 1 to total_steps + 1 and raises when stepped
    further; so does this schedule (ValueError). Momentum cycling is not offered.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, anneal_strategy="cos",
                 div_factor=25.0, final_div_factor=1e4, three_phase=False):
        self.max_lr = _positive("max_lr", max_lr)
        self.total_steps = _count("total_steps", total_steps)
        self.pct_start = _fraction("pct_start", pct_start)
        self.anneal_strategy = _choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        self.div_factor = _positive("div_factor", div_factor, allow_zero=False)
        self.final_div_factor = _positive("final_div_factor", final_div_factor, allow_zero=False)
        self.three_phase = bool(three_phase)

    def _phases(self):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        up = float(self.pct_start * self.total_steps) - 1
        if self.three_phase:
            return [(up, initial, self.max_lr),
                    (float(2 * self.pct_start * self.total_steps) - 2, self.max_lr, initial),
                    (self.total_steps - 1, initial, final)]
        return [(up, initial, self.max_lr), (self.total_steps - 1, self.max_lr, final)]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (np.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def values(self, t):
        done = np.asarray(t, dtype=np.int64) - 1
        if done.size and done.max() > self.total_steps:
            raise ValueError(f"OneCycle(total_steps={self.total_steps}) has no rate for step "
                             f"{int(done.max()) + 1}: it defines steps 1 to "
                             f"{self.total_steps + 1}, as torch's OneCycleLR (which raises when "
                             "stepped further); raise total_steps to at least maxiter - 1")
        rates = np.empty(done.shape)
        left = np.ones(done.shape, dtype=bool)
        phases = self._phases()
        start_step = 0.0
        for index, (end_step, start_lr, end_lr) in enumerate(phases):
            here = left & ((done <= end_step) | (index == len(phases) - 1))
            pct = (done[here] - start_step) / (end_step - start_step)
            rates[here] = self._anneal(start_lr, end_lr, pct)
            left &= ~here
            start_step = end_step
        return rates


class Sequential(Schedule):
    """schedules[k] from milestone k on, restarted at its own step 1, as torch's SequentialLR:
    at step t, with m the last milestone <= t - 1 (0 before the first), the rate is
    ``schedules[k](t - m)``.

    torch's sub-schedulers all start from the optimizer's lr; here each carries its own.
    """

    def __init__(self, schedules, milestones):
        schedules = list(schedules)
        if not schedules:
            raise ValueError("Sequential needs at least one schedule")
        self.schedules = [_pure_only("Sequential", item) if callable(item) else Constant(item)
                          for item in schedules]
        self.milestones = _milestones("milestones", milestones, strictly_increasing=True)
        if len(self.milestones) != len(self.schedules) - 1:
            raise ValueError(f"Sequential needs one milestone fewer than schedules: got "
                             f"{len(self.schedules)} schedules and {len(self.milestones)} "
                             "milestones")

    @property
    def pure(self):
        return all(isinstance(item, Schedule) and item.pure for item in self.schedules)

    def values(self, t):
        t = np.asarray(t, dtype=np.int64)
        which = np.searchsorted(np.asarray(self.milestones, dtype=np.int64), t - 1,
                                side="right")
        offsets = np.concatenate(([0], self.milestones)).astype(np.int64)
        rates = np.empty(t.shape)
        for index in np.unique(which):
            here = which == index
            rates[here] = schedule_values(self.schedules[index], t[here] - offsets[index])
        return rates


class ReduceLROnPlateau(Schedule):
    """torch's ReduceLROnPlateau: the rate drops by ``factor`` once the objective has not improved
    for more than ``patience`` observations.

    The schedule holds the rate; :meth:`step` gives it one observation of the objective (torch's
    ``scheduler.step(metrics)``). :func:`adamnb.minimize` calls it with ``f`` after every step
    (with an :func:`adamnb.minibatches` stream, with the mean ``f`` of each epoch, after the
    epoch's last step); it runs on a copy, leaving the schedule it was given as it was. With an
    optimizer class, call ``optimizer.schedule.step(metric)`` yourself, e.g. after each epoch.
    The state (the current rate, the best value, the counters) is saved and restored with the
    optimizer's state.

    Parameters
    ----------
    lr : float
        The initial rate (torch takes it from the optimizer).
    mode : {"min", "max"}
        Whether the objective should decrease or increase.
    factor : float
        The rate is multiplied by it on a plateau; 0 <= factor < 1.
    patience : int
        Observations without improvement that are tolerated.
    threshold : float
        What counts as an improvement: relative (``threshold_mode="rel"``:
        ``a < best (1 - threshold)`` in mode "min") or absolute (``a < best - threshold``).
    threshold_mode : {"rel", "abs"}
    cooldown : int
        Observations ignored after a reduction.
    min_lr : float
        The rate never drops below it.
    eps : float
        A reduction smaller than eps is skipped.
    """

    pure = False
    needs_objective = True

    def __init__(self, lr, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self.lr = _positive("lr", lr)
        self.mode = _choice("mode", mode, ("min", "max"))
        self.factor = _positive("factor", factor)
        if self.factor >= 1.0:
            raise ValueError(f"Invalid factor: {factor!r}; expected 0 <= factor < 1 (torch: "
                             "'Factor should be < 1.0.')")
        self.patience = _count("patience", patience, low=0)
        self.threshold = _positive("threshold", threshold)
        self.threshold_mode = _choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = _count("cooldown", cooldown, low=0)
        self.min_lr = _positive("min_lr", min_lr)
        self.eps = _positive("eps", eps)
        self.load_state({"lr": self.lr, "best": -math.inf if mode == "max" else math.inf,
                         "num_bad_epochs": 0, "cooldown_counter": 0, "last_epoch": 0})

    @property
    def last_lr(self):
        """The current rate (torch's ``get_last_lr()``)."""
        return self._lr

    def values(self, t):
        return np.full(np.shape(t), self._lr)

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metric):
        """Observe the objective once (torch's ``ReduceLROnPlateau.step(metrics)``).

        Raises
        ------
        ValueError
            ``metric`` is not a real number.
        """
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise ValueError(f"ReduceLROnPlateau.step needs a real number, got {metric!r}") \
                from None
        self._last_epoch += 1
        if self._is_better(current, self._best):
            self._best = current
            self._num_bad_epochs = 0
        else:
            self._num_bad_epochs += 1
        if self._cooldown_counter > 0:
            self._cooldown_counter -= 1
            self._num_bad_epochs = 0
        if self._num_bad_epochs > self.patience:
            reduced = max(self._lr * self.factor, self.min_lr)
            if self._lr - reduced > self.eps:
                self._lr = reduced
            self._cooldown_counter = self.cooldown
            self._num_bad_epochs = 0

    def state(self):
        """The state beside the arguments: current rate, best value, counters."""
        return {"lr": self._lr, "best": self._best, "num_bad_epochs": self._num_bad_epochs,
                "cooldown_counter": self._cooldown_counter, "last_epoch": self._last_epoch}

    def load_state(self, state):
        """Restore :meth:`state`.

        Raises
        ------
        ValueError
            Keys missing or unknown, or values of the wrong kind.
        """
        expected = {"lr", "best", "num_bad_epochs", "cooldown_counter", "last_epoch"}
        if not isinstance(state, dict) or set(state) != expected:
            raise ValueError(f"ReduceLROnPlateau state must have the keys {sorted(expected)}, "
                             f"got {state!r}")
        self._lr = _positive("lr", state["lr"])
        best = float(state["best"])
        if math.isnan(best):
            raise ValueError("ReduceLROnPlateau state: best is NaN")
        self._best = best
        self._num_bad_epochs = _count("num_bad_epochs", state["num_bad_epochs"], low=0)
        self._cooldown_counter = _count("cooldown_counter", state["cooldown_counter"], low=0)
        self._last_epoch = _count("last_epoch", state["last_epoch"], low=0)


def fresh_copy(schedule):
    """A copy of a schedule that holds state (:class:`ReduceLROnPlateau`), so that a run cannot
    change the caller's; any other schedule is returned as it is."""
    return copy.deepcopy(schedule) if getattr(schedule, "needs_objective", False) else schedule


def _subclasses(cls):
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def _to_data(name, value):
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_data(name, item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"schedule argument {name}={value!r} cannot be stored as plain data")


def _from_data(value):
    if isinstance(value, dict) and "type" in value:
        return Schedule.from_dict(value)
    if isinstance(value, list):
        return [_from_data(item) for item in value]
    return value


def checked_rate(schedule, t):
    """``schedule(t)`` as a float, checked: a finite number >= 0.

    Raises
    ------
    ValueError
        The schedule returned something else; the message names the step.
    """
    value = schedule(t)
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"lr schedule returned {value!r} at step {t}; expected a real number") \
            from None
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"lr schedule returned {value!r} at step {t}; expected a finite "
                         "number >= 0")
    return rate


def checked_rates(rates, t):
    """``rates`` (the rates of the steps ``t``) as a float64 array, checked as
    :func:`checked_rate` checks one: finite numbers >= 0. A :class:`Schedule` subclass computes
    its rates for a block of steps at once; a bad one is named by its step, as a callable's is.

    Raises
    ------
    ValueError
        A rate is NaN, infinite or negative; the message names the first such step.
    """
    rates = np.asarray(rates, dtype=np.float64)
    bad = ~(np.isfinite(rates) & (rates >= 0))
    if bad.any():
        where = np.flatnonzero(bad.ravel())[0]
        raise ValueError(f"lr schedule returned {float(rates.ravel()[where])!r} at step "
                         f"{int(np.asarray(t).ravel()[where])}; expected a finite number >= 0")
    return rates


def schedule_values(schedule, t):
    """Rates of the steps ``t`` (an integer array): vectorised for the built-in schedules, one
    checked call per step for any other callable."""
    if isinstance(schedule, Schedule):
        return np.asarray(schedule.values(t), dtype=np.float64)
    return np.array([checked_rate(schedule, int(step)) for step in np.asarray(t)],
                    dtype=np.float64)


def as_schedule(lr):
    """A schedule from a learning rate: a number becomes :class:`Constant`; a callable is kept as
    it is (its values are checked at every step, :func:`checked_rate`)."""
    if callable(lr) and not hasattr(lr, "__float__"):
        return lr
    return Constant(lr)
