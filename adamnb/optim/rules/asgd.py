"""ASGD, averaged stochastic gradient descent (Polyak & Juditsky, 1992), as torch.optim.ASGD."""

import numpy as np

from adamnb.backends.elements import torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import MAXIMIZE, WEIGHT_DECAY, Hyperparameter, UpdateRule, lr_option


@elementwise
def asgd_element(x, g, state, i, c):
    maximize, weight_decay, decay, eta, mu, average = c
    g = torch_gradient(x, g, maximize, weight_decay)
    x = x * decay
    x = x - eta * g
    if average != 0:
        state[0, i] = state[0, i] + (x - state[0, i]) * mu
    else:
        state[0, i] = x  # torch copies x while mu is exactly 1
    return x


def _previous_rates(o, t, lr, scalars):
    # eta_t is computed, as torch computes it, at the end of step t-1 from that step's rate.
    previous = np.concatenate(([scalars["last_lr"]], lr[:-1]))
    return {"previous_lr": previous}, {"last_lr": float(lr[-1])}


def _coefficients(o, t, lr, previous_lr):
    lambd, done = o["lambd"], (t - 1).astype(float)
    eta = np.where(t == 1, lr, previous_lr / (1.0 + lambd * previous_lr * done) ** o["alpha"])
    mu = np.where(t == 1, 1.0, 1.0 / np.maximum(1.0, done - o["t0"]))
    return {"decay": 1.0 - lambd * eta, "eta": eta, "mu": mu, "average": (mu != 1.0).astype(float)}


def _outputs(o, x, state):
    return {"ax": state[..., 0, :].copy()}


ASGD = UpdateRule(
    name="asgd", class_name="ASGD",
    hyperparameters=(
        lr_option(1e-2),
        Hyperparameter("lambd", 1e-4, "decay term: x is scaled by 1 - lambd eta_t at each step, "
                       "and eta_t decays with it"),
        Hyperparameter("alpha", 0.75, "power of the decay of eta_t"),
        Hyperparameter("t0", 1e6, "step after which averaging starts", low=-np.inf),
        WEIGHT_DECAY,
        MAXIMIZE,
    ),
    slots=("ax",),
    coefficients=_coefficients,
    element=asgd_element,
    scalar_state={"last_lr": 0.0},
    scalar_series=_previous_rates,
    outputs=_outputs,
    summary="stochastic gradient descent with a decaying step and an averaged iterate "
            "(Polyak & Juditsky, 1992)",
    source="Polyak & Juditsky (1992), SIAM J. Control Optim. 30(4); Bottou (2012), 'Stochastic "
           "gradient descent tricks', section 5.3 (the step-size schedule); torch.optim.ASGD",
    doc=r"""With :math:`\lambda` = ``lambd``, :math:`\alpha`, :math:`t_0` and weight decay
    :math:`w`, the step size :math:`\eta_t` and averaging weight :math:`\mu_t` are torch's, computed
    at the end of the previous step from its learning rate :math:`\gamma_{t-1}`:

    .. math::

        \eta_1 &= \gamma_1, \quad \eta_t = \frac{\gamma_{t-1}}
                 {(1 + \lambda \gamma_{t-1} (t-1))^\alpha}, \qquad
        \mu_1 = 1, \quad \mu_t = \frac{1}{\max(1, t - 1 - t_0)} \\
        g_t &\leftarrow -g_t \ \text{(maximize)}, \qquad g_t \leftarrow g_t + w x_{t-1} \\
        x_t &= (1 - \lambda \eta_t)\, x_{t-1} - \eta_t g_t \\
        \bar x_t &= \bar x_{t-1} + \mu_t (x_t - \bar x_{t-1}) \quad (\bar x_t = x_t
                    \text{ while } \mu_t = 1)

    The averaged iterate :math:`\bar x_t` (torch's ``ax``, the estimate Polyak & Juditsky prove
    optimal) is the state slot ``ax``: ``state_dict()["state"]["ax"]``,
    ``optimizer.outputs(x)["ax"]``, and ``res.ax`` in :func:`adamnb.minimize`'s result. With the
    default :math:`t_0 = 10^6` it equals :math:`x_t` until step :math:`10^6 + 2`.""",
)

RULES = (ASGD,)
