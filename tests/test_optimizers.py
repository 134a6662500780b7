"""The stateful classes: construction-time validation, signatures and step() input checks."""

import inspect
import math

import numpy as np
import pytest

import adamnb
from adamnb.optim import rules
from adamnb.optim.optimizers import OPTIMIZERS


@pytest.mark.parametrize("cls, option, value, message", [
    (adamnb.Adam, "lr", -1e-3, "Invalid lr: -0.001; expected 0 <= lr"),
    (adamnb.Adam, "lr", float("nan"), "Invalid lr: nan"),
    (adamnb.Adam, "lr", float("inf"), "Invalid lr: inf"),
    (adamnb.Adam, "beta1", 1.0, "Invalid beta1: 1.0; expected 0 <= beta1 < 1"),
    (adamnb.Adam, "beta2", -0.5, "Invalid beta2: -0.5; expected 0 <= beta2 < 1"),
    (adamnb.AdamW, "beta2", float("nan"), "Invalid beta2: nan"),
    (adamnb.Adam, "eps", -1e-8, "Invalid eps: -1e-08; expected 0 <= eps"),
    (adamnb.AdamW, "weight_decay", -0.1, "Invalid weight_decay"),
    (adamnb.Adam, "amsgrad", 0.5, "Invalid amsgrad: 0.5; expected True or False"),
    (adamnb.SGD, "momentum", -0.9, "Invalid momentum"),
    (adamnb.SGD, "dampening", 1.5, "expected 0 <= dampening <= 1"),
    (adamnb.RMSprop, "alpha", 1.1, "Invalid alpha"),
    (adamnb.Adadelta, "rho", -0.1, "Invalid rho"),
    (adamnb.Adagrad, "lr_decay", -1, "Invalid lr_decay"),
    (adamnb.Adagrad, "initial_accumulator_value", -1, "Invalid initial_accumulator_value"),
    (adamnb.NAdam, "momentum_decay", -4e-3, "Invalid momentum_decay"),
    (adamnb.RAdam, "lr", "fast", "Invalid lr: 'fast'"),
])
def test_invalid_hyperparameters_name_the_option_and_range(cls, option, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        cls(**{option: value})


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="nesterov.*momentum > 0 and dampening = 0"):
        adamnb.SGD(nesterov=True)
    with pytest.raises(ValueError, match="dampening = 0"):
        adamnb.SGD(momentum=0.9, dampening=0.1, nesterov=True)
    adamnb.SGD(momentum=0.9, nesterov=True)


def test_unknown_option_is_a_type_error_listing_the_valid_ones():
    with pytest.raises(TypeError, match="unexpected option.*betas.*valid options are: lr, beta1"):
        adamnb.Adam(betas=(0.9, 0.999))


def test_signatures_show_torchs_defaults():
    signature = inspect.signature(adamnb.Adam)
    assert signature.parameters["lr"].default == 1e-3
    assert signature.parameters["beta2"].default == 0.999
    assert inspect.signature(adamnb.Adadelta).parameters["lr"].default == 1.0
    assert inspect.signature(adamnb.AdamW).parameters["weight_decay"].default == 1e-2
    assert adamnb.Adam(0.1).options["lr"] == 0.1  # positional lr, as torch after params


def test_every_class_has_the_math_in_its_docstring():
    for cls in OPTIMIZERS.values():
        assert ".. math::" in cls.__doc__ and "Parameters" in cls.__doc__, cls.__name__
    assert "Algorithm 2" in adamnb.Adamax.__doc__ and "hat\\epsilon" in adamnb.Adam.__doc__


class TestStepInput:
    def test_x_must_be_a_flat_float_array(self):
        opt = adamnb.Adam()
        with pytest.raises(TypeError, match="NumPy array"):
            opt.step([1.0, 2.0], np.ones(2))
        with pytest.raises(TypeError, match="float32 or float64"):
            opt.step(np.ones(2, np.int64), np.ones(2))
        with pytest.raises(ValueError, match="flat 1-D"):
            opt.step(np.ones((2, 2)), np.ones((2, 2)))
        with pytest.raises(ValueError, match="contiguous"):
            opt.step(np.ones(6)[::2], np.ones(3))
        frozen = np.ones(2)
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            opt.step(frozen, np.ones(2))

    def test_gradient_must_match(self):
        opt = adamnb.Adam()
        with pytest.raises(ValueError, match="gradient must match x"):
            opt.step(np.ones(3), np.ones(2))
        with pytest.raises(ValueError, match="gradient must match x"):
            opt.step(np.ones(3), np.ones(3, np.float32))

    def test_state_is_bound_to_one_vector(self):
        opt = adamnb.Adam()
        opt.step(np.ones(3), np.ones(3))
        with pytest.raises(ValueError, match="one optimizer per parameter vector"):
            opt.step(np.ones(4), np.ones(4))
        opt.reset()
        opt.step(np.ones(4), np.ones(4))
        assert opt.t == 1

    def test_a_reshaped_view_is_updated_in_place(self):
        weights = np.ones((2, 3))
        opt = adamnb.SGD(lr=0.5)
        opt.step(weights.reshape(-1), np.ones(6))
        np.testing.assert_array_equal(weights, 0.5)


def test_first_adam_step_is_lr_times_sign_of_g():
    """Kingma & Ba, section 2.1: the first effective step is about lr in size, whatever |g|."""
    x, g = np.zeros(4), np.array([1e-3, -5.0, 2e4, -1e-6])
    adamnb.Adam(lr=0.1).step(x, g)
    # m_1 = (1-b1) g and v_1 = (1-b2) g^2, so the step is lr g / (|g| + eps) exactly in math.
    np.testing.assert_allclose(x, -0.1 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    assert np.abs(x[:3]).min() > 0.0999


def test_rules_registry_and_amsgrad_alias():
    assert list(rules.RULES) == list(adamnb.METHODS)
    assert rules.get_rule("AMSGRAD").defaults["amsgrad"] is True
    with pytest.raises(ValueError, match="requires amsgrad=True"):
        rules.get_rule("amsgrad").validate({"amsgrad": False})
    assert math.isclose(rules.RULES["adamw"].defaults["weight_decay"], 1e-2)
