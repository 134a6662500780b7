"""Adam (Kingma & Ba, 2014), AMSGrad (Reddi, Kale & Kumar, 2018) and AdamW (Loshchilov & Hutter,
2019), as torch.optim.Adam and torch.optim.AdamW: one element, three configurations."""

import dataclasses
import math

import numpy as np

from adamnb.backends.elements import adam_moments, maximum, torch_gradient
from adamnb.backends.jit import elementwise
from adamnb.optim._rule import (MAXIMIZE, Hyperparameter, UpdateRule, moment_options, power,
                                weight_decay_scalars)


@elementwise
def adam_element(x, g, state, i, c):
    (maximize, weight_decay, decay_factor, one_minus_beta1, beta2, one_minus_beta2, step_size,
     bias_correction2_sqrt, eps, amsgrad) = c
    x = x * decay_factor  # AdamW's decoupled decay; exactly x for Adam (factor 1)
    g = torch_gradient(x, g, maximize, weight_decay)  # L2; exactly g for AdamW (weight_decay 0)
    m, v = adam_moments(g, state, i, one_minus_beta1, beta2, one_minus_beta2)
    if amsgrad != 0:
        v = maximum(state[2, i], v)
        state[2, i] = v
    return x - step_size * (m / (math.sqrt(v) / bias_correction2_sqrt + eps))


def _coefficients(decoupled):
    def coefficients(o, t, lr):
        correction2 = np.sqrt(1.0 - power(o["beta2"], t))
        return {**weight_decay_scalars(o, lr, decoupled),
                "step_size": lr / (1.0 - power(o["beta1"], t)),
                "bias_correction2_sqrt": correction2,
                # Keras's epsilon hat joins sqrt(v) before the correction: the same denominator
                # as torch's with eps / sqrt(1 - beta2^t) (module notes)
                "eps": o["eps"] / correction2 if o["eps_hat"] else o["eps"]}
    return coefficients


def _hyperparameters(weight_decay_default, weight_decay_doc):
    return (
        *moment_options(1e-3, (0.9, 0.999), 1e-8),
        Hyperparameter("weight_decay", weight_decay_default, weight_decay_doc),
        Hyperparameter("amsgrad", False, "use the running maximum of the second moment "
                       "(Reddi et al., 2018)", kind="bool"),
        Hyperparameter("eps_hat", False, "eps is Kingma & Ba's epsilon hat, added to sqrt(v_t) "
                       "before the bias correction, as Keras and TensorFlow add it",
                       kind="bool"),
        MAXIMIZE,
    )


_SLOTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
_ROWS = lambda o: 3 if o["amsgrad"] else 2  # noqa: E731

_MATH = r"""
    .. math::

        g_t &\leftarrow -g_t \ \text{(maximize)} \\
        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(amsgrad)} \quad\text{else}\quad
        \hat v_t = v_t \\
        x_t &= x_{t-1} - \frac{\eta_t}{1-\beta_1^t}\,
               \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}
        \quad\text{or, with eps_hat,}\quad
        x_t = x_{t-1} - \frac{\eta_t \sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
              \frac{m_t}{\sqrt{\hat v_t} + \epsilon}
"""

_PAPER = r"""
    Kingma & Ba's Algorithm 1 adds :math:`\epsilon` to the square root of the *bias-corrected*
    second moment, :math:`x_t = x_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)` with
    :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)`, which is the
    formula above. Their "more efficient" ordering (section 2) instead uses
    :math:`\eta_t = \eta \sqrt{1-\beta_2^t}/(1-\beta_1^t)` and
    :math:`x_t = x_{t-1} - \eta_t m_t/(\sqrt{v_t} + \hat\epsilon)`, i.e.
    :math:`\hat\epsilon = \epsilon \sqrt{1-\beta_2^t}`; the two differ only in how :math:`\epsilon`
    enters. ``eps_hat=True`` selects the second form, which is what Keras and TensorFlow compute
    (``tf.keras.optimizers.Adam``: "This epsilon is 'epsilon hat' in the Kingma and Ba paper";
    ``tf.raw_ops.ApplyAdam``); it is computed as the first with
    :math:`\epsilon / \sqrt{1-\beta_2^t}` in place of :math:`\epsilon`, the same denominator up
    to rounding. AMSGrad (Reddi, Kale & Kumar, 2018) keeps the maximum of the raw :math:`v_t`,
    as torch does."""

ADAM = UpdateRule(
    name="adam", class_name="Adam",
    hyperparameters=_hyperparameters(0.0, "L2 penalty coefficient (added to the gradient)"),
    slots=_SLOTS,
    rows=_ROWS,
    coefficients=_coefficients(decoupled=False),
    element=adam_element,
    summary="adaptive moment estimation (Kingma & Ba, 2014)",
    source="Kingma & Ba (2014), arXiv:1412.6980, Algorithm 1; AMSGrad: Reddi, Kale & Kumar "
           "(2018); torch.optim.Adam",
    doc=_MATH + _PAPER,
)

AMSGRAD = dataclasses.replace(
    ADAM,
    name="amsgrad",
    class_name=None,  # adamnb.Adam(amsgrad=True)
    defined_by="torch.optim.Adam",
    fixed={"amsgrad": True},
    summary="Adam with the running maximum of the second moment (Reddi, Kale & Kumar, 2018)",
    source="Reddi, Kale & Kumar (2018), ICLR; torch.optim.Adam(amsgrad=True)",
    doc=_MATH,
)

ADAMW = UpdateRule(
    name="adamw", class_name="AdamW",
    hyperparameters=_hyperparameters(1e-2, "decoupled weight decay: x is scaled by "
                                     "1 - lr weight_decay before each step"),
    slots=_SLOTS,
    rows=_ROWS,
    coefficients=_coefficients(decoupled=True),
    element=adam_element,
    summary="Adam with decoupled weight decay (Loshchilov & Hutter, 2019)",
    source="Loshchilov & Hutter (2019), ICLR; torch.optim.AdamW",
    doc=r"""The weight decay is decoupled from the gradient: first
    :math:`x_{t-1} \leftarrow (1 - \eta_t \lambda)\, x_{t-1}`, then Adam's step with no L2 term:
    """ + _MATH.replace(r"g_t &\leftarrow g_t + \lambda x_{t-1} \\" + "\n        ", ""),
)

RULES = (ADAM, AMSGRAD, ADAMW)
