"""The update rules: each rule's per-element math, hyperparameters, defaults and validation.

Every rule is written exactly once here, as an :class:`UpdateRule`:

* ``element(x, g, state, i, c)`` is the whole per-element update, a plain Python function that
  numba compiles inline into the serial CPU kernel, the parallel CPU kernel and the CUDA kernel
  (:mod:`adamnb.backends.cpu`). It reads ``x[i]``'s value ``x`` and gradient ``g``, reads and writes
  the rule's state vectors ``state[k, i]`` and returns the new ``x``. It uses no literal constants,
  only its arguments, so float32 work stays float32 (a float64 literal would promote it).
* ``coefficients(options, t, lr)`` turns the hyperparameters, the 1-based step numbers ``t`` and
  the steps' learning rates into the per-step scalars ``c`` (bias corrections, step sizes, flags),
  in float64 on the host, as torch.optim computes its scalars in Python floats. It is vectorised
  over an array of steps: :meth:`UpdateRule.coefficient_table` computes a block of steps at once
  (one row per step), which every driver uses, so that all of them get the same bits. Each row is
  cast to the dtype of ``x`` once. (``minimize``'s drivers read the same numbers transposed, from
  :meth:`UpdateRule.coefficient_columns`, which is cheaper to fill for thousands of steps.)
* ``slots`` names the state vectors in row order (torch's state names) and ``rows(options)`` says
  how many of them a configuration uses: only the last optional slot that is in use adds a row, so
  e.g. Adam without AMSGrad keeps two vectors, not three.

Formulas and defaults are those of torch.optim's classes of the same names (PyTorch 2.x); the
public classes in :mod:`adamnb.optim.optimizers` show them in math beside Kingma & Ba (2014) where the
paper differs. Hyperparameter names are torch's keywords with ``betas`` split into ``beta1`` and
``beta2``.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from adamnb.backends.jit import elementwise


@dataclass(frozen=True)
class Hyperparameter:
    """One option of an update rule: its default, its type and its allowed range.

    ``low``/``high`` bound a float option; ``low_open``/``high_open`` make a bound strict.
    """

    name: str
    default: object
    doc: str
    kind: str = "float"  # "float", "bool" or "lr" (a float or a schedule)
    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def range_text(self):
        if self.kind == "bool":
            return "True or False"
        left = f"{self.low:g} {'<' if self.low_open else '<='} {self.name}"
        if math.isinf(self.high):
            return left
        return f"{left} {'<' if self.high_open else '<='} {self.high:g}"

    def validate(self, value):
        """Return ``value`` normalised (float or bool), or raise ValueError naming the option."""
        if self.kind == "bool":
            if value in (True, False, 0, 1) and not isinstance(value, float):
                return bool(value)
            raise ValueError(f"Invalid {self.name}: {value!r}; expected True or False")
        if self.kind == "lr" and callable(value):
            return value  # a schedule; validated by adamnb.optim.schedules.as_schedule
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_real_scalar(value):
            raise ValueError(f"Invalid {self.name}: {value!r}; expected a real number with "
                             f"{self.range_text()}")
        value = float(value)
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        if math.isnan(value) or too_low or too_high or (math.isinf(value) and self.kind == "lr"):
            raise ValueError(f"Invalid {self.name}: {value!r}; expected {self.range_text()}")
        return value


def _is_real_scalar(value):
    # NumPy scalars (np.float32(0.1), np.int64(1)) are numbers too.
    return hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in "iuf"


def power(base, t):
    """``base ** t`` for step numbers ``t``, with the exponent capped where the power is below
    2**-200.

    pow is about 50 times slower when its result is subnormal (0.9 ** 20000 is), and past that cap
    nothing computed from the power changes: 1 - base**t rounds to exactly 1, and t * base**t (in
    RAdam's rho_t) is far below an ulp of the terms it is added to.
    """
    if 0.0 < base < 1.0:
        t = np.minimum(t, int(200 * math.log(2.0) / -math.log(base)) + 1)
    return base ** np.asarray(t, dtype=np.float64)


def _lr(default):
    return Hyperparameter("lr", default, "learning rate: a float or a schedule lr(t), t = 1, 2, ...",
                          kind="lr")


def _beta(name, default, doc):
    return Hyperparameter(name, default, doc, high=1.0, high_open=True)


def _eps(default, doc="term added to the denominator for numerical stability"):
    return Hyperparameter("eps", default, doc)


_WEIGHT_DECAY = Hyperparameter("weight_decay", 0.0, "L2 penalty coefficient (added to the gradient)")


@dataclass(frozen=True)
class UpdateRule:
    """One update rule written once: options, state layout, per-step scalars and element math."""

    name: str
    hyperparameters: tuple
    slots: tuple
    rows: Callable
    coefficients: Callable
    element: Callable
    summary: str
    check: Callable = None  # cross-option validation, raises ValueError
    initial_state: Callable = None  # (options, slot) -> fill value of that slot, default 0
    fixed: dict = field(default_factory=dict)  # options a method pins (amsgrad=True for "amsgrad")
    scalar_state: dict = field(default_factory=dict)  # host scalars carried between steps
    # (options, t array, scalars) -> (per-step series of each scalar, scalars after the last step)
    scalar_series: Callable = None

    @property
    def n_coefficients(self):
        """Length of the per-step coefficient tuple ``c`` the element reads."""
        return self.coefficient_table(self.validate({}), np.ones(1, np.int64), np.ones(1),
                                      dict(self.scalar_state))[0].shape[1]

    def coefficient_table(self, options, t, lr, scalars):
        """Per-step scalars of steps ``t`` (1-D int array) at rates ``lr``: one row per step.

        Returns ``(table, scalars)``: a C-contiguous float64 array of shape (len(t), K) and the
        host scalars after the last of these steps (``t`` must continue the run they belong to).
        """
        columns, scalars = self.coefficient_columns(options, t, lr, scalars)
        return np.ascontiguousarray(columns.T), scalars

    def coefficient_columns(self, options, t, lr, scalars, dtype=np.float64):
        """:meth:`coefficient_table` transposed, in ``dtype``: one row per coefficient.

        Returns ``(columns, scalars)``: a C-contiguous array of shape (K, len(t)) whose column j
        holds the coefficients of step ``t[j]``, computed in float64 and rounded to ``dtype`` once.
        The drivers of many steps read it: filling it writes each coefficient contiguously.
        """
        t = np.asarray(t, dtype=np.int64)
        lr = np.asarray(lr, dtype=np.float64)
        series = {}
        if self.scalar_series is not None:
            series, scalars = self.scalar_series(options, t, scalars)
        coefficients = self.coefficients(options, t, lr, **series)
        columns = np.empty((len(coefficients), t.size), dtype=dtype)
        for k, coefficient in enumerate(coefficients):
            columns[k] = coefficient
        return columns, scalars

    def step_coefficients(self, options, t, lr, scalars):
        """The coefficients of the single step ``t``: (tuple of floats, scalars after it)."""
        table, scalars = self.coefficient_table(options, np.array([t]), np.array([lr]), scalars)
        return tuple(table[0].tolist()), scalars

    def state_vectors(self, options, size, dtype, starts=None):
        """The state at step 0: ``rows(options)`` vectors of ``size`` (zeros unless
        ``initial_state`` says otherwise), shape (rows, size), or (starts, rows, size) for
        ``starts`` independent runs."""
        rows = self.rows(options)
        shape = (rows, size) if starts is None else (starts, rows, size)
        state = np.zeros(shape, dtype=dtype)
        if self.initial_state is not None:
            for row, slot in enumerate(self.slots[:rows]):
                state[..., row, :] = self.initial_state(options, slot)
        return state

    @property
    def defaults(self):
        values = {hp.name: hp.default for hp in self.hyperparameters}
        values.update(self.fixed)
        return values

    def validate(self, options):
        """Return the complete, validated option dict; ValueError names any bad option.

        Unknown names are the caller's concern (minimize warns, the classes raise TypeError).
        """
        values = self.defaults
        by_name = {hp.name: hp for hp in self.hyperparameters}
        for name, value in options.items():
            if name in self.fixed and value != self.fixed[name]:
                raise ValueError(f"method {self.name!r} requires {name}={self.fixed[name]!r}")
            if name in by_name:
                values[name] = by_name[name].validate(value)
        if self.check is not None:
            self.check(values)
        return values


# --- SGD -----------------------------------------------------------------------------------------

@elementwise
def sgd_element(x, g, state, i, c):
    weight_decay, momentum_now, one_minus_dampening_now, lr, use_momentum, nesterov, momentum = c
    g = g + weight_decay * x
    if use_momentum != 0:
        # On step 1 the coefficients are (0, 1): the buffer becomes exactly g, as torch clones it.
        buffer = momentum_now * state[0, i] + one_minus_dampening_now * g
        state[0, i] = buffer
        if nesterov != 0:
            g = g + momentum * buffer
        else:
            g = buffer
    return x - lr * g


def _sgd_coefficients(o, t, lr):
    first = t == 1
    return (o["weight_decay"], np.where(first, 0.0, o["momentum"]),
            np.where(first, 1.0, 1.0 - o["dampening"]), lr, float(o["momentum"] != 0),
            float(o["nesterov"]), o["momentum"])


def _sgd_check(o):
    if o["nesterov"] and (o["momentum"] <= 0 or o["dampening"] != 0):
        raise ValueError("Invalid nesterov=True: Nesterov momentum requires momentum > 0 and "
                         f"dampening = 0 (got momentum={o['momentum']!r}, "
                         f"dampening={o['dampening']!r})")


SGD = UpdateRule(
    name="sgd",
    hyperparameters=(
        _lr(1e-3),
        Hyperparameter("momentum", 0.0, "momentum factor"),
        Hyperparameter("dampening", 0.0, "dampening for momentum", high=1.0),
        _WEIGHT_DECAY,
        Hyperparameter("nesterov", False, "use Nesterov momentum", kind="bool"),
    ),
    slots=("momentum_buffer",),
    rows=lambda o: 1 if o["momentum"] != 0 else 0,
    coefficients=_sgd_coefficients,
    element=sgd_element,
    check=_sgd_check,
    summary="stochastic gradient descent with optional (Nesterov) momentum",
)


# --- Adagrad -------------------------------------------------------------------------------------

@elementwise
def adagrad_element(x, g, state, i, c):
    weight_decay, clr, eps = c
    g = g + weight_decay * x
    total = state[0, i] + g * g
    state[0, i] = total
    return x - clr * (g / (math.sqrt(total) + eps))


ADAGRAD = UpdateRule(
    name="adagrad",
    hyperparameters=(
        _lr(1e-2),
        Hyperparameter("lr_decay", 0.0, "learning-rate decay: lr_t = lr / (1 + (t-1) lr_decay)"),
        _WEIGHT_DECAY,
        Hyperparameter("initial_accumulator_value", 0.0, "initial value of the sum of squares"),
        _eps(1e-10),
    ),
    slots=("sum",),
    rows=lambda o: 1,
    coefficients=lambda o, t, lr: (o["weight_decay"], lr / (1.0 + (t - 1) * o["lr_decay"]),
                                   o["eps"]),
    element=adagrad_element,
    initial_state=lambda o, slot: o["initial_accumulator_value"],
    summary="adaptive per-coordinate steps from the running sum of squared gradients",
)


# --- RMSprop -------------------------------------------------------------------------------------

@elementwise
def rmsprop_element(x, g, state, i, c):
    weight_decay, alpha, one_minus_alpha, eps, lr, momentum, centered = c
    g = g + weight_decay * x
    square_avg = alpha * state[0, i] + one_minus_alpha * g * g
    state[0, i] = square_avg
    if centered != 0:
        grad_avg = state[2, i] + one_minus_alpha * (g - state[2, i])
        state[2, i] = grad_avg
        avg = math.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = math.sqrt(square_avg) + eps
    if momentum > 0:
        buffer = momentum * state[1, i] + g / avg
        state[1, i] = buffer
        return x - lr * buffer
    return x - lr * (g / avg)


RMSPROP = UpdateRule(
    name="rmsprop",
    hyperparameters=(
        _lr(1e-2),
        Hyperparameter("alpha", 0.99, "smoothing constant of the squared-gradient average",
                       high=1.0),
        _eps(1e-8),
        _WEIGHT_DECAY,
        Hyperparameter("momentum", 0.0, "momentum factor"),
        Hyperparameter("centered", False, "normalise by the estimated variance of the gradient",
                       kind="bool"),
    ),
    slots=("square_avg", "momentum_buffer", "grad_avg"),
    rows=lambda o: 3 if o["centered"] else (2 if o["momentum"] > 0 else 1),
    coefficients=lambda o, t, lr: (o["weight_decay"], o["alpha"], 1.0 - o["alpha"], o["eps"], lr,
                                   o["momentum"], float(o["centered"])),
    element=rmsprop_element,
    summary="steps scaled by a running root-mean-square of the gradient (Hinton, 2012)",
)


# --- Adadelta ------------------------------------------------------------------------------------

@elementwise
def adadelta_element(x, g, state, i, c):
    weight_decay, rho, one_minus_rho, eps, lr = c
    g = g + weight_decay * x
    square_avg = rho * state[0, i] + one_minus_rho * g * g
    state[0, i] = square_avg
    delta = math.sqrt(state[1, i] + eps) / math.sqrt(square_avg + eps) * g
    state[1, i] = rho * state[1, i] + one_minus_rho * delta * delta
    return x - lr * delta


ADADELTA = UpdateRule(
    name="adadelta",
    hyperparameters=(
        _lr(1.0),
        Hyperparameter("rho", 0.9, "decay of the running averages", high=1.0),
        _eps(1e-6),
        _WEIGHT_DECAY,
    ),
    slots=("square_avg", "acc_delta"),
    rows=lambda o: 2,
    coefficients=lambda o, t, lr: (o["weight_decay"], o["rho"], 1.0 - o["rho"], o["eps"], lr),
    element=adadelta_element,
    summary="unit-corrected steps from running averages of squared gradients and updates "
            "(Zeiler, 2012)",
)


# --- Adam, AMSGrad, AdamW ------------------------------------------------------------------------

@elementwise
def adam_element(x, g, state, i, c):
    (weight_decay, decay_factor, one_minus_beta1, beta2, one_minus_beta2, step_size,
     bias_correction2_sqrt, eps, amsgrad) = c
    x = x * decay_factor  # AdamW's decoupled decay; exactly x for Adam (factor 1)
    g = g + weight_decay * x  # Adam's L2 penalty; exactly g for AdamW (weight_decay 0 here)
    m = state[0, i] + one_minus_beta1 * (g - state[0, i])
    v = beta2 * state[1, i] + one_minus_beta2 * g * g
    state[0, i] = m
    state[1, i] = v
    if amsgrad != 0:
        v = max(state[2, i], v)
        state[2, i] = v
    return x - step_size * (m / (math.sqrt(v) / bias_correction2_sqrt + eps))


def _adam_coefficients(decoupled):
    def coefficients(o, t, lr):
        beta1, beta2 = o["beta1"], o["beta2"]
        decay = o["weight_decay"]
        return (0.0 if decoupled else decay, 1.0 - lr * decay if decoupled else 1.0,
                1.0 - beta1, beta2, 1.0 - beta2, lr / (1.0 - power(beta1, t)),
                np.sqrt(1.0 - power(beta2, t)), o["eps"], float(o["amsgrad"]))
    return coefficients


def _adam_hyperparameters(weight_decay_default, weight_decay_doc):
    return (
        _lr(1e-3),
        _beta("beta1", 0.9, "decay rate of the first-moment estimate"),
        _beta("beta2", 0.999, "decay rate of the second-moment estimate"),
        _eps(1e-8),
        Hyperparameter("weight_decay", weight_decay_default, weight_decay_doc),
        Hyperparameter("amsgrad", False, "use the running maximum of the second moment "
                       "(Reddi et al., 2018)", kind="bool"),
    )


_ADAM_SLOTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

ADAM = UpdateRule(
    name="adam",
    hyperparameters=_adam_hyperparameters(0.0, "L2 penalty coefficient (added to the gradient)"),
    slots=_ADAM_SLOTS,
    rows=lambda o: 3 if o["amsgrad"] else 2,
    coefficients=_adam_coefficients(decoupled=False),
    element=adam_element,
    summary="adaptive moment estimation (Kingma & Ba, 2014)",
)

AMSGRAD = UpdateRule(
    name="amsgrad",
    hyperparameters=ADAM.hyperparameters,
    slots=_ADAM_SLOTS,
    rows=ADAM.rows,
    coefficients=ADAM.coefficients,
    element=adam_element,
    fixed={"amsgrad": True},
    summary="Adam with the running maximum of the second moment (Reddi, Kale & Kumar, 2018)",
)

ADAMW = UpdateRule(
    name="adamw",
    hyperparameters=_adam_hyperparameters(1e-2, "decoupled weight decay: x *= 1 - lr weight_decay "
                                          "before each step"),
    slots=_ADAM_SLOTS,
    rows=ADAM.rows,
    coefficients=_adam_coefficients(decoupled=True),
    element=adam_element,
    summary="Adam with decoupled weight decay (Loshchilov & Hutter, 2019)",
)


# --- AdaMax --------------------------------------------------------------------------------------

@elementwise
def adamax_element(x, g, state, i, c):
    weight_decay, one_minus_beta1, beta2, eps, clr = c
    g = g + weight_decay * x
    m = state[0, i] + one_minus_beta1 * (g - state[0, i])
    u = max(beta2 * state[1, i], abs(g) + eps)
    state[0, i] = m
    state[1, i] = u
    return x - clr * (m / u)


ADAMAX = UpdateRule(
    name="adamax",
    hyperparameters=(
        _lr(2e-3),
        _beta("beta1", 0.9, "decay rate of the first-moment estimate"),
        _beta("beta2", 0.999, "decay rate of the exponentially weighted infinity norm"),
        _eps(1e-8),
        _WEIGHT_DECAY,
    ),
    slots=("exp_avg", "exp_inf"),
    rows=lambda o: 2,
    coefficients=lambda o, t, lr: (o["weight_decay"], 1.0 - o["beta1"], o["beta2"], o["eps"],
                                   lr / (1.0 - power(o["beta1"], t))),
    element=adamax_element,
    summary="Adam with the infinity norm (Kingma & Ba, 2014, Algorithm 2)",
)


# --- NAdam ---------------------------------------------------------------------------------------

@elementwise
def nadam_element(x, g, state, i, c):
    (weight_decay, one_minus_beta1, beta2, one_minus_beta2, bias_correction2, eps, gradient_step,
     momentum_step) = c
    g = g + weight_decay * x
    m = state[0, i] + one_minus_beta1 * (g - state[0, i])
    v = beta2 * state[1, i] + one_minus_beta2 * g * g
    state[0, i] = m
    state[1, i] = v
    denominator = math.sqrt(v / bias_correction2) + eps
    x = x - gradient_step * (g / denominator)
    return x - momentum_step * (m / denominator)


def nadam_momentum(o, t):
    """Dozat's momentum schedule: mu_t = beta1 (1 - 0.5 * 0.96 ** (t * momentum_decay))."""
    return o["beta1"] * (1.0 - 0.5 * 0.96 ** (t * o["momentum_decay"]))


def _nadam_mu_products(o, t, mu_product):
    # Multiplied one step at a time (cumprod is sequential), as a per-step loop would.
    products = np.cumprod(np.concatenate(([mu_product], nadam_momentum(o, t))))[1:]
    return {"mu_product": products}, {"mu_product": float(products[-1])}


def _nadam_coefficients(o, t, lr, mu_product):
    mu, mu_next = nadam_momentum(o, t), nadam_momentum(o, t + 1)
    beta2 = o["beta2"]
    return (o["weight_decay"], 1.0 - o["beta1"], beta2, 1.0 - beta2, 1.0 - power(beta2, t), o["eps"],
            lr * (1.0 - mu) / (1.0 - mu_product), lr * mu_next / (1.0 - mu_product * mu_next))


NADAM = UpdateRule(
    name="nadam",
    hyperparameters=(
        _lr(2e-3),
        _beta("beta1", 0.9, "decay rate of the first-moment estimate"),
        _beta("beta2", 0.999, "decay rate of the second-moment estimate"),
        _eps(1e-8),
        _WEIGHT_DECAY,
        Hyperparameter("momentum_decay", 4e-3, "psi in Dozat's momentum schedule"),
    ),
    slots=("exp_avg", "exp_avg_sq"),
    rows=lambda o: 2,
    coefficients=_nadam_coefficients,
    element=nadam_element,
    # The product mu_1 ... mu_t, a float64 host scalar saved with the state. torch keeps it in a
    # float32 scalar tensor; the two differ by at most float32 rounding of that one scalar.
    scalar_state={"mu_product": 1.0},
    scalar_series=lambda o, t, s: _nadam_mu_products(o, t, s["mu_product"]),
    summary="Adam with Nesterov momentum (Dozat, 2016)",
)


# --- RAdam ---------------------------------------------------------------------------------------

@elementwise
def radam_element(x, g, state, i, c):
    (weight_decay, one_minus_beta1, beta2, one_minus_beta2, bias_correction1, lr, rectified,
     rectification, bias_correction2_sqrt, eps) = c
    g = g + weight_decay * x
    m = state[0, i] + one_minus_beta1 * (g - state[0, i])
    v = beta2 * state[1, i] + one_minus_beta2 * g * g
    state[0, i] = m
    state[1, i] = v
    corrected_m = m / bias_correction1
    if rectified != 0:
        adaptive_lr = bias_correction2_sqrt / (math.sqrt(v) + eps)
        return x - corrected_m * lr * adaptive_lr * rectification
    return x - corrected_m * lr


def radam_rho(o, t):
    """Length of the approximated simple moving average, rho_t (Liu et al., 2020)."""
    beta2 = o["beta2"]
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):  # beta2 = 0 gives 0/0 at no rectified t
        return rho_inf, rho_inf - 2.0 * t * power(beta2, t) / (1.0 - power(beta2, t))


def _radam_coefficients(o, t, lr):
    beta1, beta2 = o["beta1"], o["beta2"]
    rho_inf, rho_t = radam_rho(o, t)
    rectified = rho_t > 5.0
    # Only the rectified steps use r_t; elsewhere its radicand may be negative, so it is masked.
    radicand = np.where(rectified, (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t), 0.0)
    return (o["weight_decay"], 1.0 - beta1, beta2, 1.0 - beta2, 1.0 - power(beta1, t), lr,
            rectified.astype(float), np.sqrt(np.maximum(radicand, 0.0)),
            np.sqrt(1.0 - power(beta2, t)), o["eps"])


RADAM = UpdateRule(
    name="radam",
    hyperparameters=(
        _lr(1e-3),
        _beta("beta1", 0.9, "decay rate of the first-moment estimate"),
        _beta("beta2", 0.999, "decay rate of the second-moment estimate"),
        _eps(1e-8),
        _WEIGHT_DECAY,
    ),
    slots=("exp_avg", "exp_avg_sq"),
    rows=lambda o: 2,
    coefficients=_radam_coefficients,
    element=radam_element,
    summary="Adam with the variance of the adaptive step rectified (Liu et al., 2020)",
)


#: Every rule by method name, in the order shown to users.
RULES = {rule.name: rule for rule in
         (SGD, ADAGRAD, RMSPROP, ADADELTA, ADAM, AMSGRAD, ADAMW, ADAMAX, NADAM, RADAM)}


def get_rule(name):
    """The rule called ``name`` (case-insensitive); ValueError lists the valid names."""
    if isinstance(name, str) and name.lower() in RULES:
        return RULES[name.lower()]
    raise ValueError(f"Unknown method {name!r}; valid methods are: {', '.join(RULES)}")
