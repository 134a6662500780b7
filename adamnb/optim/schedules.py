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
"""

import math

import numpy as np

__all__ = ["Schedule", "Constant", "InverseSqrt", "Exponential", "Step", "Cosine", "Warmup",
           "as_schedule", "schedule_values", "checked_rate"]


def _positive(name, value, allow_zero=True):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {name}: {value!r}; expected a real number") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid {name}: {value!r}; expected a finite number {bound}")
    return value


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ValueError(f"Invalid {name}: {value!r}; expected a positive integer")
    if int(value) < 1:
        raise ValueError(f"Invalid {name}: {value!r}; expected a positive integer")
    return int(value)


class Schedule:
    """Base of the built-in schedules: ``schedule(t)`` is the learning rate of step t >= 1.

    Subclasses define ``values(t)`` over an integer array of steps; the scalar call uses the same
    NumPy arithmetic, so a rate is the same bits whichever way a driver asks for it.

    ``pure`` says the rates depend on ``t`` alone, so the drivers may compute them for a block of
    steps ahead; a schedule built on a user's callable (``Warmup(my_function, 10)``) is not pure,
    and is then called once per step, at that step.
    """

    pure = True

    def values(self, t):
        raise NotImplementedError

    def __call__(self, t):
        return float(self.values(np.array([t], dtype=np.int64))[0])

    def __repr__(self):
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
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
        return {"type": type(self).__name__,
                **{name: _to_data(name, value) for name, value in vars(self).items()}}

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
        classes = {cls.__name__: cls for cls in _subclasses(Schedule)}
        if name not in classes:
            raise ValueError(f"unknown schedule type {name!r}; expected one of "
                             f"{', '.join(sorted(classes))}")
        return classes[name](**{key: _from_data(value) for key, value in data.items()})


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
        self.base = base if callable(base) else Constant(base)
        self.warmup_steps = _count("warmup_steps", warmup_steps)

    @property
    def pure(self):
        return isinstance(self.base, Schedule) and self.base.pure

    def values(self, t):
        return schedule_values(self.base, t) * np.minimum(1.0, np.asarray(t) / self.warmup_steps)


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
