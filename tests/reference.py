"""Slow, readable NumPy reference implementations of torch.optim and optax update rules.

This module is the test oracle for the fast Numba kernels.  It is written
independently of them, directly from the "Algorithm" pseudo-code boxes in the
PyTorch 2.x documentation of

    torch.optim.SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, Adamax, NAdam, RAdam,
    Rprop, ASGD

(https://pytorch.org/docs/stable/generated/torch.optim.<Name>.html), and was
checked against the single-tensor (``foreach=False``) code path of the
installed torch (``torch/optim/<name>.py``, functions ``_single_tensor_<name>``);
and from optax's documentation and transforms for

    optax.lion, yogi, adabelief, lamb, novograd, adan, contrib.adopt,
    contrib.ademamix, contrib.schedule_free_adamw, contrib.prodigy

(optax/_src/alias.py, transform.py, contrib/_adopt.py, _ademamix.py,
_schedule_free.py, _prodigy.py), with the papers' formulas where optax takes a
callable (AdEMAMix's alpha and beta3 warm-ups: Pagliardini et al. 2024,
section 3); and torch.optim.Adafactor and torch.optim.Muon from their
documented algorithms (Muon's momentum as its code computes it, see muon()).

Conventions
-----------
* One plain generator per rule, one ``yield`` per optimizer step, no in-place
  tricks; the loop around it (gradient, schedule, maximize, the recorded
  iterates) is written once, in ``_stepped``.  Symbols follow the docs: ``g``
  gradient, ``m`` first moment, ``v`` second moment, ``t`` the 1-based step.
* Array arithmetic is done in the dtype of ``x0`` (float32 stays float32:
  with NumPy >= 2 a Python float times a float32 array is float32).  Every
  scalar (lr, betas, bias corrections, ...) is a Python float computed in
  float64, which is what torch does for its scalar hyper-parameters.
* ``lr_schedule(t)`` (if given) replaces ``lr`` at step ``t`` everywhere lr
  appears (including AdamW's decay factor and Adagrad's ``clr`` numerator).
* ``maximize`` (torch's rules) negates the gradient ``grad(x, t)`` before
  anything else, as torch does.
* optax counts steps from 0: a schedule optax calls with ``count`` is the value
  of step ``t = count + 1`` here; ``lr_schedule(t)`` gives the learning rate of
  step ``t`` (optax's ``learning_rate(t - 1)``).

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

import functools
import math

import numpy as np

# --------------------------------------------------------------------------
# Defaults: exactly torch 2.x's constructor defaults (verified against the
# installed torch/optim/*.py).  ``betas`` is split into beta1/beta2.
# --------------------------------------------------------------------------
_ADAM_DEFAULTS = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
                      eps_hat=False, maximize=False)
#: Options of torch's rules that torch lacks, each from the library named, off by default.
NOT_IN_TORCH = {"eps_hat": "Keras / TensorFlow (tf.raw_ops.ApplyAdam)",
                "eps_in_sqrt": "optax.rmsprop, tf.raw_ops.ApplyRMSProp"}

DEFAULTS = {
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                maximize=False),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                    eps=1e-10, maximize=False),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                    eps_in_sqrt=False, maximize=False),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False),
    "adam": dict(_ADAM_DEFAULTS),
    "amsgrad": dict(_ADAM_DEFAULTS, amsgrad=True),
    "adamw": dict(_ADAM_DEFAULTS, weight_decay=1e-2),
    "adamax": dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, maximize=False),
    "nadam": dict(lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                  decoupled_weight_decay=False, maximize=False),
    "radam": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                  decoupled_weight_decay=False, maximize=False),
    # torch's etas=(0.5, 1.2) and step_sizes=(1e-6, 50) split, as betas are.
    "rprop": dict(lr=1e-2, eta_minus=0.5, eta_plus=1.2, step_size_min=1e-6, step_size_max=50.0,
                  maximize=False),
    "asgd": dict(lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, maximize=False),
    # optax's defaults; optax has none for learning_rate (the values here are adamnb's).
    "lion": dict(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=1e-3),
    "yogi": dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-3, initial_accumulator_value=1e-6),
    "adabelief": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-16, eps_root=1e-16, nesterov=False),
    "adan": dict(lr=1e-3, beta1=0.98, beta2=0.92, beta3=0.99, eps=1e-8, eps_root=1e-8,
                 weight_decay=0.0),
    "adopt": dict(lr=1e-3, beta1=0.9, beta2=0.9999, eps=1e-6, nesterov=False, use_clipping=True),
    "ademamix": dict(lr=1e-3, beta1=0.9, beta2=0.999, beta3=0.9999, alpha=5.0, eps=1e-8,
                     eps_root=0.0, weight_decay=0.0, alpha_warmup=0, beta3_warmup=0),
    "schedule_free_adamw": dict(lr=0.0025, warmup_steps=0, beta1=0.9, beta2=0.999, eps=1e-8,
                                weight_decay=0.0, weight_lr_power=2.0),
    "lamb": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0),
    "novograd": dict(lr=1e-3, beta1=0.9, beta2=0.25, eps=1e-6, eps_root=0.0, weight_decay=0.0),
    "prodigy": dict(lr=1.0, beta1=0.9, beta2=0.999, beta3=None, eps=1e-8, estim_lr0=1e-6,
                    estim_lr_coef=1.0, weight_decay=0.0, safeguard_warmup=False),
    # torch's eps=(None, 1e-3) split into eps1, eps2, as betas are.
    "adafactor": dict(lr=1e-2, beta2_decay=-0.8, eps1=None, eps2=1e-3, d=1.0, weight_decay=0.0,
                      maximize=False),
    # torch's ns_coefficients=(3.4445, -4.7750, 2.0315) split into ns_a, ns_b, ns_c.
    "muon": dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, ns_a=3.4445,
                 ns_b=-4.7750, ns_c=2.0315, eps=1e-7, ns_steps=5, adjust_lr_fn=None),
}

#: Options that are not numbers or booleans (kept as they are), and reference-only options: the
#: 2-D shape of the vector (and its memory order), for the rules that update matrices.
_AS_GIVEN = ("beta3", "eps1", "adjust_lr_fn", "ns_steps", "shape", "order")

_BOOL_OPTIONS = ("amsgrad", "nesterov", "centered", "maximize", "decoupled_weight_decay",
                 "use_clipping", "safeguard_warmup")


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def _grad(grads, x, t):
    """Gradient at the current iterate, as a fresh array of x's dtype."""
    return np.array(grads(x.copy(), t), dtype=x.dtype, copy=True)


def _lr(lr, lr_schedule, t):
    """lr at step t: the schedule (if any) replaces the constant lr."""
    return float(lr) if lr_schedule is None else float(lr_schedule(t))


def _weight_decay(x, g, lr_t, weight_decay, decoupled=False):
    """torch's weight decay, before the moments: L2 (``g <- g + lambda x``) or, decoupled
    (AdamW, ``decoupled_weight_decay``), ``x <- x (1 - lr lambda)``."""
    if weight_decay == 0:
        return x, g
    if decoupled:
        return x * (1.0 - lr_t * weight_decay), g
    return x, g + weight_decay * x


def _adam_moments(m, v, g, beta1, beta2, t):
    """torch's Adam moments (Adam, AdamW, NAdam, RAdam), ``m <- beta1 m + (1-beta1) g`` and
    ``v <- beta2 v + (1-beta2) g^2``, and the bias corrections ``1 - beta1^t``, ``1 - beta2^t``."""
    return (beta1 * m + (1.0 - beta1) * g, beta2 * v + (1.0 - beta2) * (g * g),
            1.0 - beta1**t, 1.0 - beta2**t)


def _stepped(rule):
    """The loop every reference shares, around one rule's per-step math.

    ``rule(x0, **options)`` is a generator over the steps: it yields the point where the next
    gradient is taken (the iterate; schedule-free AdamW's y) and receives ``(t, lr_t, g)`` for
    step ``t`` (lr_t: the schedule's value or lr; g: the gradient there, negated first when
    torch's ``maximize`` is set, as torch does). It may yield ``(point, extras)`` to report
    results beyond the iterate (ASGD's average). The wrapper takes
    ``(x0, grads, steps, lr_schedule, lr, **options)`` and returns the points after each step,
    and the last extras if the rule reports any.
    """
    @functools.wraps(rule)
    def run(x0, grads, steps, lr_schedule, lr, maximize=False, **options):
        body = rule(x0.copy(), **options)
        point, extras = _unpack(next(body))
        out = []
        for t in range(1, steps + 1):
            g = _grad(grads, point, t)
            point, extras = _unpack(body.send((t, _lr(lr, lr_schedule, t), -g if maximize else g)))
            out.append(point.copy())
        return out if extras is None else (out, extras)
    return run


def _unpack(yielded):
    return yielded if isinstance(yielded, tuple) else (yielded, None)


# --------------------------------------------------------------------------
# SGD  (docs: torch.optim.SGD, "Algorithm")
#   if lambda != 0:  g <- g + lambda * x
#   if mu != 0:
#       b_t <- g                         (t == 1, no dampening)
#       b_t <- mu b_{t-1} + (1-tau) g    (t > 1)
#       g <- g + mu b_t  if nesterov  else  b_t
#   x <- x - lr g
# --------------------------------------------------------------------------
@_stepped
def sgd(x, momentum, dampening, weight_decay, nesterov):
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")  # as torch
    b = None
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay)
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


# --------------------------------------------------------------------------
# Adagrad  (docs: torch.optim.Adagrad)
#   state_sum_0 = initial_accumulator_value
#   clr <- lr / (1 + (t-1) lr_decay)
#   if lambda != 0:  g <- g + lambda x
#   state_sum <- state_sum + g^2
#   x <- x - clr * g / (sqrt(state_sum) + eps)
# --------------------------------------------------------------------------
@_stepped
def adagrad(x, lr_decay, weight_decay, initial_accumulator_value, eps):
    state_sum = np.full_like(x, initial_accumulator_value)
    while True:
        t, lr_t, g = yield x
        clr = lr_t / (1.0 + (t - 1) * lr_decay)
        x, g = _weight_decay(x, g, lr_t, weight_decay)
        state_sum = state_sum + g * g
        x = x - clr * (g / (np.sqrt(state_sum) + eps))


# --------------------------------------------------------------------------
# RMSprop  (docs: torch.optim.RMSprop)
#   if lambda != 0:  g <- g + lambda x
#   v <- alpha v + (1-alpha) g^2
#   vt <- v
#   if centered:  g_avg <- alpha g_avg + (1-alpha) g ;  vt <- vt - g_avg^2
#   if mu > 0:  b <- mu b + g / (sqrt(vt) + eps) ;  x <- x - lr b
#   else:       x <- x - lr g / (sqrt(vt) + eps)
#   eps_in_sqrt (optax, TensorFlow): sqrt(vt + eps) in place of sqrt(vt) + eps
# --------------------------------------------------------------------------
@_stepped
def rmsprop(x, alpha, eps, weight_decay, momentum, centered, eps_in_sqrt=False):
    v, g_avg, b = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay)
        v = alpha * v + (1.0 - alpha) * (g * g)
        v_tilde = v
        if centered:
            g_avg = alpha * g_avg + (1.0 - alpha) * g
            v_tilde = v_tilde - g_avg * g_avg
        # eps_in_sqrt: optax.rmsprop(eps_in_sqrt=True), tf.raw_ops.ApplyRMSProp: g / sqrt(v + eps)
        denom = np.sqrt(v_tilde + eps) if eps_in_sqrt else np.sqrt(v_tilde) + eps
        if momentum > 0:
            b = momentum * b + g / denom
            x = x - lr_t * b
        else:
            x = x - lr_t * (g / denom)


# --------------------------------------------------------------------------
# Adadelta  (docs: torch.optim.Adadelta)
#   if lambda != 0:  g <- g + lambda x
#   v <- rho v + (1-rho) g^2
#   delta <- sqrt(u + eps) / sqrt(v + eps) * g
#   u <- rho u + (1-rho) delta^2
#   x <- x - lr delta
# --------------------------------------------------------------------------
@_stepped
def adadelta(x, rho, eps, weight_decay):
    v, u = np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay)
        v = rho * v + (1.0 - rho) * (g * g)
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1.0 - rho) * (delta * delta)
        x = x - lr_t * delta


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
@_stepped
def adam(x, beta1, beta2, eps, weight_decay, amsgrad, eps_hat=False, decoupled=False):
    m, v = np.zeros_like(x), np.zeros_like(x)
    v_max = np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay, decoupled)
        m, v, bias_correction1, bias_correction2 = _adam_moments(m, v, g, beta1, beta2, t)
        step_size = lr_t / bias_correction1
        if amsgrad:
            v_max = np.maximum(v_max, v)
        v_used = v_max if amsgrad else v
        if eps_hat:
            # tf.raw_ops.ApplyAdam (Keras's Adam): lr_t = lr sqrt(1-beta2^t)/(1-beta1^t),
            # x <- x - lr_t m / (sqrt(v) + eps)
            lr_hat = lr_t * math.sqrt(bias_correction2) / bias_correction1
            x = x - lr_hat * (m / (np.sqrt(v_used) + eps))
        else:
            denom = np.sqrt(v_used) / math.sqrt(bias_correction2) + eps
            x = x - step_size * (m / denom)


def adamw(x0, grads, steps, lr_schedule, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
          eps_hat=False):
    return adam(x0, grads, steps, lr_schedule, lr, maximize=maximize, beta1=beta1, beta2=beta2,
                eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, eps_hat=eps_hat,
                decoupled=True)


# --------------------------------------------------------------------------
# Adamax  (docs: torch.optim.Adamax)
#   if lambda != 0:  g <- g + lambda x
#   m <- beta1 m + (1-beta1) g
#   u <- max(beta2 u, |g| + eps)
#   x <- x - lr/(1-beta1^t) * m / u
# --------------------------------------------------------------------------
@_stepped
def adamax(x, beta1, beta2, eps, weight_decay):
    m, u = np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay)
        m = beta1 * m + (1.0 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g) + eps)
        clr = lr_t / (1.0 - beta1**t)
        x = x - clr * (m / u)


# --------------------------------------------------------------------------
# NAdam  (docs: torch.optim.NAdam)
#   if maximize:  g <- -g
#   if lambda != 0:  x <- x (1 - lr lambda)  if decoupled_weight_decay  else  g <- g + lambda x
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
@_stepped
def nadam(x, beta1, beta2, eps, weight_decay, momentum_decay, decoupled_weight_decay):
    m, v = np.zeros_like(x), np.zeros_like(x)
    mu_product = 1.0
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay, decoupled_weight_decay)
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
        mu_product = mu_product * mu
        mu_product_next = mu_product * mu_next
        m, v, _, bias_correction2 = _adam_moments(m, v, g, beta1, beta2, t)
        denom = np.sqrt(v / bias_correction2) + eps
        coef_g = lr_t * (1.0 - mu) / (1.0 - mu_product)
        coef_m = lr_t * mu_next / (1.0 - mu_product_next)
        x = x - coef_g * (g / denom)
        x = x - coef_m * (m / denom)


# --------------------------------------------------------------------------
# RAdam  (docs: torch.optim.RAdam)
#   if maximize:  g <- -g
#   if lambda != 0:  x <- x (1 - lr lambda)  if decoupled_weight_decay  else  g <- g + lambda x
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


@_stepped
def radam(x, beta1, beta2, eps, weight_decay, decoupled_weight_decay):
    m, v = np.zeros_like(x), np.zeros_like(x)
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    while True:
        t, lr_t, g = yield x
        x, g = _weight_decay(x, g, lr_t, weight_decay, decoupled_weight_decay)
        m, v, bias_correction1, bias_correction2 = _adam_moments(m, v, g, beta1, beta2, t)
        m_hat = m / bias_correction1
        rho_t = radam_rho_t(t, beta2)
        if rho_t > 5.0:
            l_t = math.sqrt(bias_correction2) / (np.sqrt(v) + eps)
            r_t = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                            / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
            x = x - m_hat * lr_t * l_t * r_t
        else:
            x = x - m_hat * lr_t


# --------------------------------------------------------------------------
# Rprop  (docs: torch.optim.Rprop; code: _single_tensor_rprop)
#   init: g_prev = 0, step size eta_0 = lr (of the first step)
#   if maximize:  g <- -g
#   s = sign(g g_prev)
#   eta <- clamp(eta * {eta_plus if s > 0, eta_minus if s < 0, 1 otherwise}, min, max)
#   g <- 0 where s < 0
#   x <- x - sign(g) eta ;  g_prev <- g
# (the docs clamp only the changed step sizes; torch's code clamps all, which
#  differs only for an lr outside [step_size_min, step_size_max]: we follow the code)
# --------------------------------------------------------------------------
@_stepped
def rprop(x, eta_minus, eta_plus, step_size_min, step_size_max):
    prev = np.zeros_like(x)
    step_size = None
    while True:
        t, lr_t, g = yield x
        if step_size is None:
            step_size = np.full_like(x, lr_t)
        s = np.sign(g * prev)
        factor = np.where(s > 0, eta_plus, np.where(s < 0, eta_minus, 1.0)).astype(x.dtype)
        step_size = np.clip(step_size * factor, step_size_min, step_size_max).astype(x.dtype)
        g = np.where(s < 0, np.zeros_like(g), g)
        x = x - np.sign(g) * step_size
        prev = g


# --------------------------------------------------------------------------
# ASGD  (torch.optim.ASGD; code: _single_tensor_asgd; Polyak & Juditsky 1992)
#   init: eta = lr (of the first step), mu = 1, ax = 0
#   if maximize:  g <- -g
#   if lambda_w != 0:  g <- g + lambda_w x
#   x <- x (1 - lambd eta) - eta g
#   ax <- ax + mu (x - ax)  if mu != 1  else  x
#   eta <- lr_t / (1 + lambd lr_t t)^alpha ;  mu <- 1 / max(1, t - t0)   (for step t + 1)
# --------------------------------------------------------------------------
@_stepped
def asgd(x, lambd, alpha, t0, weight_decay):
    ax = np.zeros_like(x)
    eta, mu = None, 1.0
    while True:
        t, lr_t, g = yield x, {"ax": ax}
        if eta is None:
            eta = lr_t
        x, g = _weight_decay(x, g, lr_t, weight_decay)
        x = x * (1.0 - lambd * eta)
        x = x - eta * g
        ax = ax + (x - ax) * mu if mu != 1 else x.copy()
        eta = lr_t / (1.0 + lambd * lr_t * t) ** alpha
        mu = 1.0 / max(1.0, t - t0)


# --------------------------------------------------------------------------
# Lion  (optax.lion docstring; Chen et al. 2023, Program 1)
#   c = (1-b1) g + b1 m ;  x <- x - lr (sign(c) + lambda x) ;  m <- (1-b2) g + b2 m
# --------------------------------------------------------------------------
@_stepped
def lion(x, beta1, beta2, weight_decay):
    m = np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        c = (1.0 - beta1) * g + beta1 * m
        x = x - lr_t * (np.sign(c) + weight_decay * x)
        m = (1.0 - beta2) * g + beta2 * m


# --------------------------------------------------------------------------
# Yogi  (optax.yogi -> scale_by_yogi(eps_root=0, initial_accumulator_value=1e-6))
#   m_0 = v_0 = initial_accumulator_value
#   m <- (1-b1) g + b1 m ;  v <- v - (1-b2) sign(v - g^2) g^2
#   x <- x - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
# --------------------------------------------------------------------------
@_stepped
def yogi(x, beta1, beta2, eps, initial_accumulator_value):
    m, v = np.full_like(x, initial_accumulator_value), np.full_like(x, initial_accumulator_value)
    while True:
        t, lr_t, g = yield x
        m = (1.0 - beta1) * g + beta1 * m
        v = v - (1.0 - beta2) * np.sign(v - g * g) * (g * g)
        x = x - lr_t * ((m / (1.0 - beta1**t)) / (np.sqrt(v / (1.0 - beta2**t)) + eps))


# --------------------------------------------------------------------------
# AdaBelief  (optax.adabelief docstring; scale_by_belief)
#   m <- (1-b1) g + b1 m ;  s <- (1-b2) (g - m)^2 + b2 s + eps_root
#   m_hat = m/(1-b1^t), or with nesterov b1 m/(1-b1^(t+1)) + (1-b1) g/(1-b1^t)
#   x <- x - lr m_hat / (sqrt(s/(1-b2^t)) + eps)
# --------------------------------------------------------------------------
@_stepped
def adabelief(x, beta1, beta2, eps, eps_root, nesterov):
    m, s = np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        m = (1.0 - beta1) * g + beta1 * m
        s = (1.0 - beta2) * (g - m) ** 2 + beta2 * s + eps_root
        if nesterov:
            m_hat = beta1 * m / (1.0 - beta1 ** (t + 1)) + (1.0 - beta1) * g / (1.0 - beta1**t)
        else:
            m_hat = m / (1.0 - beta1**t)
        x = x - lr_t * (m_hat / (np.sqrt(s / (1.0 - beta2**t)) + eps))


# --------------------------------------------------------------------------
# Adan  (optax.adan = scale_by_adan + add_decayed_weights + scale_by_learning_rate;
#        its code, not its docstring's paper form: see the rule's doc)
#   d = g - g_prev (0 at t = 1)
#   m <- (1-b1) g + b1 m ;  v <- (1-b2) d + b2 v ;  n <- (1-b3) (g + (1-b2) d)^2 + b3 n
#   u = (m/(1-b1^t) + (1-b2) v/(1-b2^t)) / (sqrt(n/(1-b3^t) + eps_root) + eps)
#   x <- x - lr (u + lambda x)
# --------------------------------------------------------------------------
@_stepped
def adan(x, beta1, beta2, beta3, eps, eps_root, weight_decay):
    m, v, n = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    g_prev = None
    while True:
        t, lr_t, g = yield x
        d = np.zeros_like(g) if g_prev is None else g - g_prev
        m = (1.0 - beta1) * g + beta1 * m
        v = (1.0 - beta2) * d + beta2 * v
        n = (1.0 - beta3) * (g + (1.0 - beta2) * d) ** 2 + beta3 * n
        u = m / (1.0 - beta1**t) + (1.0 - beta2) * (v / (1.0 - beta2**t))
        u = u / (np.sqrt(n / (1.0 - beta3**t) + eps_root) + eps)
        x = x - lr_t * (u + weight_decay * x)
        g_prev = g


# --------------------------------------------------------------------------
# ADOPT  (optax.contrib.adopt; Taniguchi et al. 2024, Algorithm 2)
#   t = 1:  v <- g^2, m stays 0, x does not move
#   t > 1:  u = clip(g / max(sqrt(v), eps), -(t-1)^(1/4), (t-1)^(1/4))  (no clip if off)
#           v <- (1-b2) g^2 + b2 v ;  m <- (1-b1) u + b1 m
#           x <- x - lr m   (nesterov: x <- x - lr ((1-b1) u + b1 m))
# --------------------------------------------------------------------------
@_stepped
def adopt(x, beta1, beta2, eps, nesterov, use_clipping):
    m, v = np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        if t == 1:
            v = g * g
            continue
        u = g / np.maximum(np.sqrt(v), eps)
        if use_clipping:
            bound = (t - 1) ** 0.25
            u = np.clip(u, -bound, bound)
        v = (1.0 - beta2) * (g * g) + beta2 * v
        m = (1.0 - beta1) * u + beta1 * m
        step = (1.0 - beta1) * u + beta1 * m if nesterov else m
        x = x - lr_t * step


# --------------------------------------------------------------------------
# AdEMAMix  (optax.contrib.ademamix docstring; Pagliardini et al. 2024, Algorithm 1)
#   with k = t - 1 (optax's count) and the paper's schedulers:
#   alpha_t = min(k alpha / T_alpha, alpha)
#   beta3_t = min(exp(ln b1 ln b3 / ((1 - k/T) ln b3 + (k/T) ln b1)), b3)   (T = T_beta3)
#   m1 <- (1-b1) g + b1 m1 ;  m2 <- (1-beta3_t) g + beta3_t m2 ;  nu <- (1-b2) g^2 + b2 nu
#   x <- x - lr ((m1/(1-b1^t) + alpha_t m2) / (sqrt(nu/(1-b2^t) + eps_root) + eps) + lambda x)
# --------------------------------------------------------------------------
@_stepped
def ademamix(x, beta1, beta2, beta3, alpha, eps, eps_root, weight_decay, alpha_warmup,
             beta3_warmup):
    m1, m2, nu = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        k = t - 1
        alpha_t = min(k * alpha / alpha_warmup, alpha) if alpha_warmup else alpha
        if beta3_warmup and k < beta3_warmup:
            a = k / beta3_warmup
            ln1, ln3 = math.log(beta1), math.log(beta3)
            beta3_t = min(math.exp(ln1 * ln3 / ((1.0 - a) * ln3 + a * ln1)), beta3)
        else:
            beta3_t = beta3
        m1 = (1.0 - beta1) * g + beta1 * m1
        m2 = (1.0 - beta3_t) * g + beta3_t * m2
        nu = (1.0 - beta2) * (g * g) + beta2 * nu
        u = (m1 / (1.0 - beta1**t) + alpha_t * m2) / (
            np.sqrt(nu / (1.0 - beta2**t) + eps_root) + eps)
        x = x - lr_t * (u + weight_decay * x)


# --------------------------------------------------------------------------
# Schedule-free AdamW  (optax.contrib.schedule_free docstring; Defazio et al. 2024,
# Algorithm 1), with the three sequences kept explicitly:
#   y (gradient point, the iterate), z (AdamW without momentum, z_0 = y_0),
#   x (average, x_0 = y_0).  gamma_t = lr min((t-1)/W, 1), gamma'_t = lr min(t/W, 1)
#   (optax's warm-up at count t-1 for the step, at t for the weight; W = 0: none)
#   v <- (1-b2) g^2 + b2 v
#   z <- z - gamma_t (g / (sqrt(v/(1-b2^t)) + eps) + lambda y)
#   c_t = w_t / sum_{s<=t} w_s,  w_t = (max_{s<=t} gamma'_s)^p   (c = 0 while 0/0)
#   x <- (1 - c_t) x + c_t z ;  y <- b1 x + (1-b1) z
# --------------------------------------------------------------------------
@_stepped
def schedule_free_adamw(y, warmup_steps, beta1, beta2, eps, weight_decay, weight_lr_power):
    z, average = y.copy(), y.copy()
    v = np.zeros_like(y)
    max_lr = weight_sum = 0.0
    while True:
        t, lr_t, g = yield y, {"x": average, "y": y, "z": z}
        step_lr = lr_t * min((t - 1) / warmup_steps, 1.0) if warmup_steps else lr_t
        weight_lr = lr_t * min(t / warmup_steps, 1.0) if warmup_steps else lr_t
        v = (1.0 - beta2) * (g * g) + beta2 * v
        z = z - step_lr * (g / (np.sqrt(v / (1.0 - beta2**t)) + eps) + weight_decay * y)
        max_lr = max(max_lr, weight_lr)
        weight = max_lr**weight_lr_power
        weight_sum += weight
        c = weight / weight_sum if weight_sum > 0 else 0.0
        average = (1.0 - c) * average + c * z
        y = beta1 * average + (1.0 - beta1) * z


# --------------------------------------------------------------------------
# LAMB  (optax.lamb = scale_by_adam, add_decayed_weights, scale_by_trust_ratio,
#        scale_by_learning_rate; You et al. 2020, Algorithm 2)
#   m <- (1-b1) g + b1 m ;  v <- (1-b2) g^2 + b2 v
#   u = (m/(1-b1^t)) / (sqrt(v/(1-b2^t) + eps_root) + eps) + lambda x
#   r = ||x|| / ||u||   (1 if either norm is 0)
#   x <- x - lr r u
# --------------------------------------------------------------------------
@_stepped
def lamb(x, beta1, beta2, eps, eps_root, weight_decay):
    m, v = np.zeros_like(x), np.zeros_like(x)
    while True:
        t, lr_t, g = yield x
        m = (1.0 - beta1) * g + beta1 * m
        v = (1.0 - beta2) * g * g + beta2 * v
        u = (m / (1.0 - beta1**t)) / (np.sqrt(v / (1.0 - beta2**t) + eps_root) + eps)
        u = u + weight_decay * x
        x_norm, u_norm = np.linalg.norm(x), np.linalg.norm(u)
        ratio = 1.0 if x_norm == 0 or u_norm == 0 else x_norm / u_norm
        x = x - lr_t * ratio * u


# --------------------------------------------------------------------------
# NovoGrad  (optax.novograd = scale_by_novograd, scale_by_learning_rate;
#            Ginsburg et al. 2019, Algorithm 1)
#   n = ||g||^2 (one layer: here the whole vector)
#   nu <- n at t = 1, else (1-b2) n + b2 nu
#   m <- b1 m + g / (sqrt(nu + eps_root) + eps) + lambda x        (m_0 = 0)
#   x <- x - lr m
# --------------------------------------------------------------------------
@_stepped
def novograd(x, beta1, beta2, eps, eps_root, weight_decay):
    m, nu = np.zeros_like(x), None
    while True:
        t, lr_t, g = yield x
        n = np.linalg.norm(g) ** 2
        nu = n if t == 1 else (1.0 - beta2) * n + beta2 * nu
        m = beta1 * m + (g / (np.sqrt(nu + eps_root) + eps) + weight_decay * x)
        x = x - lr_t * m


# --------------------------------------------------------------------------
# Prodigy  (optax.contrib.prodigy; Mishchenko & Defazio 2023, Algorithm 4)
#   d_0 = estim_lr0, r_0 = 0, b3 = sqrt(b2) if None
#   dlr = d lr sqrt(1-b2^t)/(1-b1^t)
#   m <- b1 m + (1-b1) d g ;  v <- b2 v + (1-b2) d^2 g^2
#   s <- b3 s + dlr d g / d0          (safeguard_warmup: d^2 g / d0)
#   r <- b3 r + (d/d0) dlr <g, x0 - x>
#   d <- max(d, coef r / ||s||_1)
#   x <- x - lambda dlr x - dlr m / (sqrt(v) + d eps)       (the new d)
# --------------------------------------------------------------------------
@_stepped
def prodigy(x, beta1, beta2, beta3, eps, estim_lr0, estim_lr_coef, weight_decay,
            safeguard_warmup):
    beta3 = math.sqrt(beta2) if beta3 is None else float(beta3)
    x0 = x.copy()
    m, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    d, r = estim_lr0, 0.0
    while True:
        t, lr_t, g = yield x
        dlr = d * lr_t * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        m = beta1 * m + (1.0 - beta1) * d * g
        v = beta2 * v + (1.0 - beta2) * d * d * g * g
        s = beta3 * s + (d if safeguard_warmup else dlr) * d * g / estim_lr0
        r = beta3 * r + (d / estim_lr0) * dlr * float(np.dot(g, x0 - x))
        d = max(d, estim_lr_coef * r / float(np.sum(np.abs(s))))
        x = x - weight_decay * dlr * x - dlr * m / (np.sqrt(v) + d * eps)


# --------------------------------------------------------------------------
# Adafactor  (docs: torch.optim.Adafactor, "Algorithm"; Shazeer & Stern 2018)
#   w_t = t^beta2_decay (the docs' 1 - beta2_hat_t), rho = min(lr, 1/sqrt(t))
#   alpha = max(eps2, RMS(x)) rho ;  x <- x (1 - lr lambda)
#   vector:  V <- (1-w) V + w G^2
#   matrix:  R <- (1-w) R + w mean_j G^2 ;  C <- (1-w) C + w mean_i G^2
#            V = R C^T / max(mean(R), eps1)
#   U = G / sqrt(max(V, eps1^2)) ;  x <- x - alpha U / max(1, RMS(U)/d)
#   eps1 None: the dtype's machine epsilon.  ``shape``/``order``: the vector as that matrix.
# --------------------------------------------------------------------------
@_stepped
def adafactor(x, beta2_decay, eps1, eps2, d, weight_decay, shape=None, order="C"):
    eps1 = float(np.finfo(x.dtype).eps) if eps1 is None else float(eps1)
    if shape is None:
        v = np.zeros_like(x)
    else:
        rows, cols = np.zeros(shape[0], x.dtype), np.zeros(shape[1], x.dtype)
    while True:
        t, lr_t, g = yield x
        w, rho = float(t) ** beta2_decay, min(lr_t, 1.0 / math.sqrt(t))
        alpha = max(eps2, math.sqrt(float(np.mean(x * x)))) * rho
        x = x * (1.0 - lr_t * weight_decay)
        if shape is None:
            v = (1.0 - w) * v + w * (g * g)
            u = g / np.sqrt(np.maximum(v, eps1 * eps1))
        else:
            G = g.reshape(shape, order=order)
            rows = (1.0 - w) * rows + w * np.mean(G * G, axis=1)
            cols = (1.0 - w) * cols + w * np.mean(G * G, axis=0)
            V = np.outer(rows, cols) / max(float(np.mean(rows)), eps1)
            u = (G / np.sqrt(np.maximum(V, eps1 * eps1))).reshape(-1, order=order)
        x = x - alpha / max(1.0, math.sqrt(float(np.mean(u * u))) / d) * u


# --------------------------------------------------------------------------
# Muon  (docs: torch.optim.Muon; Jordan et al. 2024), x the matrix of ``shape``:
#   B <- mu B + (1-mu) G   (the code's lerp: the docs' B <- mu B + G scaled by 1-mu, which the
#                           normalisation below cancels, up to the eps floor)
#   B~ = (1-mu) G + mu B  if nesterov  else  B
#   Y = B~ / max(||B~||_F, eps) (transposed if taller than wide);
#   ns_steps times: M = Y Y^T ; Y <- a Y + (b M + c M M) Y
#   x <- x (1 - lr lambda) - lr s Y,  s = sqrt(max(1, A/B)) or 0.2 sqrt(max(A, B))
# --------------------------------------------------------------------------
@_stepped
def muon(x, weight_decay, momentum, nesterov, ns_a, ns_b, ns_c, eps, ns_steps, adjust_lr_fn,
         shape=None, order="C"):
    if shape is None:
        raise ValueError("muon updates a matrix: give its shape")
    B = np.zeros(shape, dtype=x.dtype)
    rows, cols = shape
    scale = 0.2 * math.sqrt(max(rows, cols)) if adjust_lr_fn == "match_rms_adamw" \
        else math.sqrt(max(1.0, rows / cols))
    while True:
        t, lr_t, g = yield x
        G = g.reshape(shape, order=order)
        B = momentum * B + (1.0 - momentum) * G
        update = (1.0 - momentum) * G + momentum * B if nesterov else B
        tall = rows > cols
        Y = update.T if tall else update
        Y = Y / max(float(np.linalg.norm(Y)), eps)
        for _ in range(int(ns_steps)):
            M = Y @ Y.T
            Y = ns_a * Y + (ns_b * M + ns_c * (M @ M)) @ Y
        Y = Y.T if tall else Y
        x = x * (1.0 - lr_t * weight_decay) - lr_t * scale * Y.reshape(-1, order=order)


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
    "rprop": rprop,
    "asgd": asgd,
    "lion": lion,
    "yogi": yogi,
    "adabelief": adabelief,
    "adan": adan,
    "adopt": adopt,
    "ademamix": ademamix,
    "schedule_free_adamw": schedule_free_adamw,
    "lamb": lamb,
    "novograd": novograd,
    "prodigy": prodigy,
    "adafactor": adafactor,
    "muon": muon,
}


def reference_run(method, x0, grads, lr_schedule=None, outputs=False, **options):
    """Run ``steps`` optimizer steps of ``method`` from ``x0``.

    method      : one of DEFAULTS' keys ("amsgrad" is adam with amsgrad=True).
    x0          : 1-D float32/float64 array (not modified); all array math is
                  done in its dtype.
    grads       : callable ``grad(x, t) -> g`` (t is the 1-based step).
    lr_schedule : None or callable ``t -> lr_t`` that replaces lr at step t.
    options     : ``steps`` (required int) plus torch's keyword names with
                  ``betas`` split into ``beta1``/``beta2`` (``betas=(b1, b2)``
                  is accepted too).  Unknown names raise TypeError.

    outputs     : also return the rule's extra results after the last step
                  (ASGD's ``ax``; schedule-free AdamW's average ``x``, ``y``
                  and ``z``): ``(iterates, extras)``, extras ``{}`` for the
                  other rules.

    Returns the list ``[x_1, ..., x_steps]`` of iterates after each step (for
    schedule-free AdamW, the gradient points y_t).
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
    if method in ("adafactor", "muon"):
        params.update(shape=None, order="C")
    unknown = set(options) - set(params)
    if unknown:
        raise TypeError(f"{method}: unknown option(s) {sorted(unknown)}; allowed {sorted(params)}")
    if method == "amsgrad" and not options.get("amsgrad", True):
        raise ValueError("method 'amsgrad' cannot be run with amsgrad=False (use 'adam')")
    params.update(options)
    # Scalars as Python values (a NumPy float64 scalar would upcast float32 arrays).
    for key, value in params.items():
        if key not in _AS_GIVEN:
            params[key] = bool(value) if key in _BOOL_OPTIONS else float(value)

    x0 = np.asarray(x0)
    if x0.ndim != 1 or x0.dtype not in (np.float32, np.float64):
        raise TypeError(f"x0 must be a 1-D float32 or float64 array, got {x0.dtype} ndim={x0.ndim}")
    result = _RULES[method](x0.copy(), grads, steps, lr_schedule, **params)
    iterates, extras = result if isinstance(result, tuple) else (result, {})
    return (iterates, extras) if outputs else iterates
