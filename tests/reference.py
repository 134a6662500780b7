"""Slow, readable NumPy reference implementations of torch.optim update rules.

This module is the test oracle for the fast Numba kernels.  It is written
independently of them, directly from the "Algorithm" pseudo-code boxes in the
PyTorch 2.x documentation of

    torch.optim.SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam

(https://pytorch.org/docs/stable/generated/torch.optim.<Name>.html), and was
checked against the single-tensor (``foreach=False``) code path of the
installed torch (``torch/optim/<name>.py``, functions ``_single_tensor_<name>``).

Conventions
-----------
* One plain function per rule, one loop iteration per optimizer step, no
  in-place tricks.  Symbols follow the docs: ``g`` gradient, ``m`` first
  moment, ``v`` second moment, ``t`` the 1-based step.
* Array arithmetic is done in the dtype of ``x0`` (float32 stays float32:
  with NumPy >= 2 a Python float times a float32 array is float32).  Every
  scalar (lr, betas, bias corrections, ...) is a Python float computed in
  float64, which is what torch does for its scalar hyper-parameters.
* ``lr_schedule(t)`` (if given) replaces ``lr`` at step ``t`` everywhere lr
  appears (including AdamW's decay factor and Adagrad's ``clr`` numerator).
* ``maximize`` is not supported (always False); the gradient is ``grad(x, t)``.

Known rounding-level differences to torch (none of them changes the math):
* torch updates first moments with ``m.lerp_(g, 1 - beta1)``, i.e.
  ``m + (1-beta1)(g - m)``; the docs (and this file) write
  ``beta1 m + (1-beta1) g``.  Same for RMSprop's centered ``g_avg``.
* Adam/AdamW: the docs write ``sqrt(v / (1-beta2^t)) + eps``; torch computes
  ``sqrt(v) / sqrt(1-beta2^t) + eps``.  We follow torch's form here (eps is
  added *after* the division in both, so this is only rounding).
* NAdam: torch keeps the running product of the mu's in a 0-d tensor of dtype
  ``torch.get_default_dtype()`` -- i.e. float32 under torch's default -- and
  every ``mu_product *= mu`` is rounded to float32.  Here it is a float64
  Python scalar.  The difference is float32 rounding of a scalar (relative
  ~1e-7 in the step-size coefficients); with
  ``torch.set_default_dtype(torch.float64)`` torch matches this file to
  float64 rounding.
"""

import math

import numpy as np

# --------------------------------------------------------------------------
# Defaults: exactly torch 2.x's constructor defaults (verified against the
# installed torch/optim/*.py).  ``betas`` is split into beta1/beta2.
# --------------------------------------------------------------------------
_ADAM_DEFAULTS = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False)

DEFAULTS = {
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0),
    "adam": dict(_ADAM_DEFAULTS),
    "amsgrad": dict(_ADAM_DEFAULTS, amsgrad=True),
    "adamw": dict(_ADAM_DEFAULTS, weight_decay=1e-2),
    "adamax": dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    "nadam": dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, momentum_decay=4e-3),
    "radam": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
}

_BOOL_OPTIONS = ("amsgrad", "nesterov", "centered")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def _grad(grads, x, t):
    """Gradient at the current iterate, as a fresh array of x's dtype."""
    return np.array(grads(x.copy(), t), dtype=x.dtype, copy=True)


def _lr(lr, lr_schedule, t):
    """lr at step t: the schedule (if any) replaces the constant lr."""
    return float(lr) if lr_schedule is None else float(lr_schedule(t))


# --------------------------------------------------------------------------
# SGD  (docs: torch.optim.SGD, "Algorithm")
#   if lambda != 0:  g <- g + lambda * x
#   if mu != 0:
#       b_t <- g                         (t == 1, no dampening)
#       b_t <- mu b_{t-1} + (1-tau) g    (t > 1)
#       g <- g + mu b_t  if nesterov  else  b_t
#   x <- x - lr g
# --------------------------------------------------------------------------
def sgd(x0, grads, steps, lr_schedule, lr, momentum, dampening, weight_decay, nesterov):
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")  # as torch
    x = x0.copy()
    b = None
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            g = g + weight_decay * x
        if momentum != 0:
            if t == 1:
                b = g.copy()
            else:
                b = momentum * b + (1.0 - dampening) * g
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        x = x - lr_t * g
        out.append(x.copy())
    return out


# --------------------------------------------------------------------------
# Adagrad  (docs: torch.optim.Adagrad)
#   state_sum_0 = initial_accumulator_value
#   clr <- lr / (1 + (t-1) lr_decay)
#   if lambda != 0:  g <- g + lambda x
#   state_sum <- state_sum + g^2
#   x <- x - clr * g / (sqrt(state_sum) + eps)
# --------------------------------------------------------------------------
def adagrad(x0, grads, steps, lr_schedule, lr, lr_decay, weight_decay, initial_accumulator_value, eps):
    x = x0.copy()
    state_sum = np.full_like(x, initial_accumulator_value)
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        clr = lr_t / (1.0 + (t - 1) * lr_decay)
        if weight_decay != 0:
            g = g + weight_decay * x
        state_sum = state_sum + g * g
        x = x - clr * (g / (np.sqrt(state_sum) + eps))
        out.append(x.copy())
    return out


# --------------------------------------------------------------------------
# RMSprop  (docs: torch.optim.RMSprop)
#   if lambda != 0:  g <- g + lambda x
#   v <- alpha v + (1-alpha) g^2
#   vt <- v
#   if centered:  g_avg <- alpha g_avg + (1-alpha) g ;  vt <- vt - g_avg^2
#   if mu > 0:  b <- mu b + g / (sqrt(vt) + eps) ;  x <- x - lr b
#   else:       x <- x - lr g / (sqrt(vt) + eps)
# --------------------------------------------------------------------------
def rmsprop(x0, grads, steps, lr_schedule, lr, alpha, eps, weight_decay, momentum, centered):
    x = x0.copy()
    v = np.zeros_like(x)
    g_avg = np.zeros_like(x)
    b = np.zeros_like(x)
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            g = g + weight_decay * x
        v = alpha * v + (1.0 - alpha) * (g * g)
        v_tilde = v
        if centered:
            g_avg = alpha * g_avg + (1.0 - alpha) * g
            v_tilde = v_tilde - g_avg * g_avg
        denom = np.sqrt(v_tilde) + eps
        if momentum > 0:
            b = momentum * b + g / denom
            x = x - lr_t * b
        else:
            x = x - lr_t * (g / denom)
        out.append(x.copy())
    return out


# --------------------------------------------------------------------------
# Adadelta  (docs: torch.optim.Adadelta)
#   if lambda != 0:  g <- g + lambda x
#   v <- rho v + (1-rho) g^2
#   delta <- sqrt(u + eps) / sqrt(v + eps) * g
#   u <- rho u + (1-rho) delta^2
#   x <- x - lr delta
# --------------------------------------------------------------------------
def adadelta(x0, grads, steps, lr_schedule, lr, rho, eps, weight_decay):
    x = x0.copy()
    v = np.zeros_like(x)
    u = np.zeros_like(x)
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            g = g + weight_decay * x
        v = rho * v + (1.0 - rho) * (g * g)
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1.0 - rho) * (delta * delta)
        x = x - lr_t * delta
        out.append(x.copy())
    return out


# --------------------------------------------------------------------------
# Adam / AMSGrad / AdamW  (docs: torch.optim.Adam and torch.optim.AdamW)
#   Adam:  if lambda != 0:  g <- g + lambda x          (L2, coupled)
#   AdamW: x <- x - lr lambda x  == x * (1 - lr lambda)  (decoupled, before moments)
#   m <- beta1 m + (1-beta1) g
#   v <- beta2 v + (1-beta2) g^2
#   if amsgrad:  v_max <- max(v_max, v);  use v_max instead of v below
#   x <- x - lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
# (docs write sqrt(v/(1-beta2^t)) + eps; torch's code divides sqrt(v) by
#  sqrt(1-beta2^t) -- same math, we follow the code's rounding.)
# --------------------------------------------------------------------------
def adam(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled=False):
    x = x0.copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    v_max = np.zeros_like(x)
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            if decoupled:
                x = x * (1.0 - lr_t * weight_decay)
            else:
                g = g + weight_decay * x
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * (g * g)
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        step_size = lr_t / bias_correction1
        if amsgrad:
            v_max = np.maximum(v_max, v)
            denom = np.sqrt(v_max) / math.sqrt(bias_correction2) + eps
        else:
            denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
        x = x - step_size * (m / denom)
        out.append(x.copy())
    return out


def adamw(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay, amsgrad):
    return adam(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled=True)


# --------------------------------------------------------------------------
# Adamax  (docs: torch.optim.Adamax)
#   if lambda != 0:  g <- g + lambda x
#   m <- beta1 m + (1-beta1) g
#   u <- max(beta2 u, |g| + eps)
#   x <- x - lr/(1-beta1^t) * m / u
# --------------------------------------------------------------------------
def adamax(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay):
    x = x0.copy()
    m = np.zeros_like(x)
    u = np.zeros_like(x)
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            g = g + weight_decay * x
        m = beta1 * m + (1.0 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g) + eps)
        clr = lr_t / (1.0 - beta1**t)
        x = x - clr * (m / u)
        out.append(x.copy())
    return out


# --------------------------------------------------------------------------
# NAdam  (docs: torch.optim.NAdam, decoupled_weight_decay=False)
#   if lambda != 0:  g <- g + lambda x
#   mu_t     = beta1 (1 - 0.5 * 0.96^(t psi))
#   mu_{t+1} = beta1 (1 - 0.5 * 0.96^((t+1) psi))
#   m <- beta1 m + (1-beta1) g
#   v <- beta2 v + (1-beta2) g^2
#   denom = sqrt(v / (1-beta2^t)) + eps
#   x <- x - lr (1-mu_t)/(1 - prod_{i<=t} mu_i) g / denom
#          - lr mu_{t+1}/(1 - prod_{i<=t+1} mu_i) m / denom
# mu_product is a float64 Python scalar here (torch: 0-d tensor of the default
# dtype, float32 unless torch's default dtype is float64; see module docstring).
# --------------------------------------------------------------------------
def nadam(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay, momentum_decay):
    x = x0.copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    mu_product = 1.0
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            g = g + weight_decay * x
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product = mu_product * mu
        mu_product_next = mu_product * mu_next
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * (g * g)
        bias_correction2 = 1.0 - beta2**t
        denom = np.sqrt(v / bias_correction2) + eps
        coef_g = lr_t * (1.0 - mu) / (1.0 - mu_product)
        coef_m = lr_t * mu_next / (1.0 - mu_product_next)
        x = x - coef_g * (g / denom)
        x = x - coef_m * (m / denom)
        out.append(x.copy())
    return out


# --------------------------------------------------------------------------
# RAdam  (docs: torch.optim.RAdam, decoupled_weight_decay=False)
#   if lambda != 0:  g <- g + lambda x
#   m <- beta1 m + (1-beta1) g ;  v <- beta2 v + (1-beta2) g^2
#   m_hat = m / (1-beta1^t)
#   rho_inf = 2/(1-beta2) - 1
#   rho_t   = rho_inf - 2 t beta2^t / (1-beta2^t)
#   if rho_t > 5:
#       l_t = sqrt(1-beta2^t) / (sqrt(v) + eps)
#       r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2) rho_t))
#       x <- x - lr m_hat r_t l_t
#   else:
#       x <- x - lr m_hat
# --------------------------------------------------------------------------
def radam_rho_t(t, beta2):
    """rho_t of RAdam (Python float); the rectified branch is taken iff > 5."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    return rho_inf - 2.0 * t * beta2**t / (1.0 - beta2**t)


def radam(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay):
    x = x0.copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    out = []
    for t in range(1, steps + 1):
        lr_t = _lr(lr, lr_schedule, t)
        g = _grad(grads, x, t)
        if weight_decay != 0:
            g = g + weight_decay * x
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * (g * g)
        bias_correction1 = 1.0 - beta1**t
        bias_correction2 = 1.0 - beta2**t
        m_hat = m / bias_correction1
        rho_t = radam_rho_t(t, beta2)
        if rho_t > 5.0:
            l_t = math.sqrt(bias_correction2) / (np.sqrt(v) + eps)
            r_t = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            x = x - m_hat * lr_t * l_t * r_t
        else:
            x = x - m_hat * lr_t
        out.append(x.copy())
    return out


_RULES = {
    "sgd": sgd,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
    "amsgrad": adam,
    "adamw": adamw,
    "adamax": adamax,
    "nadam": nadam,
    "radam": radam,
}


def reference_run(method, x0, grads, lr_schedule=None, **options):
    """Run ``steps`` optimizer steps of ``method`` from ``x0``.

    method      : one of DEFAULTS' keys ("amsgrad" is adam with amsgrad=True).
    x0          : 1-D float32/float64 array (not modified); all array math is
                  done in its dtype.
    grads       : callable ``grad(x, t) -> g`` (t is the 1-based step).
    lr_schedule : None or callable ``t -> lr_t`` that replaces lr at step t.
    options     : ``steps`` (required int) plus torch's keyword names with
                  ``betas`` split into ``beta1``/``beta2`` (``betas=(b1, b2)``
                  is accepted too).  Unknown names raise TypeError.

    Returns the list ``[x_1, ..., x_steps]`` of iterates after each step.
    """
    if method not in _RULES:
        raise ValueError(f"unknown method {method!r}; expected one of {sorted(_RULES)}")
    if "steps" not in options:
        raise TypeError("reference_run() requires the keyword argument 'steps'")
    steps = options.pop("steps")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    steps = int(steps)

    if "betas" in options:
        if "beta1" in options or "beta2" in options:
            raise TypeError("give either betas or beta1/beta2, not both")
        options["beta1"], options["beta2"] = options.pop("betas")

    params = dict(DEFAULTS[method])
    unknown = set(options) - set(params)
    if unknown:
        raise TypeError(f"{method}: unknown option(s) {sorted(unknown)}; allowed {sorted(params)}")
    if method == "amsgrad" and not options.get("amsgrad", True):
        raise ValueError("method 'amsgrad' cannot be run with amsgrad=False (use 'adam')")
    params.update(options)
    # Scalars as Python values (a NumPy float64 scalar would upcast float32 arrays).
    for key, value in params.items():
        params[key] = bool(value) if key in _BOOL_OPTIONS else float(value)

    x0 = np.asarray(x0)
    if x0.ndim != 1 or x0.dtype not in (np.float32, np.float64):
        raise TypeError(f"x0 must be a 1-D float32 or float64 array, got {x0.dtype} ndim={x0.ndim}")
    return _RULES[method](x0.copy(), grads, steps, lr_schedule, **params)
