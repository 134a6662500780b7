"""The device driver's column of the options x front-ends table (tests/contract_table.py), and
the contract's faults on the device: NaN or inf anywhere in the gradient, the gradient buffer the
user's objective reuses, the point the objective may change, a callable lr.

Run in numba's CUDA simulator, in its own process (numba reads the variable once, at import)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/test_cuda*.py
"""

import numpy as np
import pytest
from scipy.optimize import rosen_der

import adamnb
from adamnb.problems import cuda_functions
from tests import contract_table as table
from tests.test_contract import RecordingSchedule
from tests.test_cuda import needs_cuda
from tests.test_cuda_minimize import _cuda, _tiny_blocks  # noqa: F401


@needs_cuda
@pytest.mark.parametrize("method, option, options, base", table.ROWS, ids=table.ROW_IDS)
def test_every_option_reaches_the_rule_on_the_device(method, option, options, base):
    got = table.run_device(method, options, cuda_functions.rosenbrock)
    expected = table.reference(method, options)
    np.testing.assert_allclose(got, expected, rtol=table.RTOL, err_msg=option)


class HostComputed:
    """A device objective computed on the host: f = |x - 1|^2 / 2, g = x - 1, with NaN (or inf)
    at ``position`` of g from the 5th call on; it returns the same device buffer every call (a
    careless objective) and writes into its argument."""

    def __init__(self, position=None):
        self.position, self.calls = position, 0
        self.buffer = None

    def __call__(self, x):
        self.calls += 1
        host = x.copy_to_host()
        g = host - 1.0
        if self.position is not None and self.calls > 4:
            g[self.position] = np.nan if self.position % 2 == 0 else np.inf
        if self.buffer is None:
            self.buffer = _cuda().device_array_like(x)
        self.buffer.copy_to_device(g)
        x.copy_to_device(np.full(x.size, 1e6, host.dtype))  # writes into its argument
        return 0.5 * float((host - 1.0) @ (host - 1.0)), self.buffer


@needs_cuda
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_nan_or_inf_anywhere_is_status_3_with_the_results_own_gradient(where):
    n = 11
    position = {"first": 0, "middle": 5, "last": 10}[where]
    objective = HostComputed(position)
    x0 = np.zeros(n)
    res = adamnb.minimize(objective, _cuda().to_device(x0), method="adam", jac=True,
                          options={"lr": 0.1, "maxiter": 20})
    assert res.status == 3 and res.nit == 3  # the accepted steps: x is after 3 of them
    expected = table.reference_run("adam", x0, lambda x, t: x - 1.0, steps=3, lr=0.1)[-1]
    np.testing.assert_array_equal(res.x.copy_to_host(), expected)
    np.testing.assert_array_equal(res.jac.copy_to_host(), expected - 1.0)
    assert res.jac is not objective.buffer


@needs_cuda
def test_an_objective_writing_into_its_argument_cannot_change_the_run():
    objective = HostComputed()
    res = adamnb.minimize(objective, _cuda().to_device(np.zeros(5)), method="adam", jac=True,
                          options={"lr": 0.1, "maxiter": 6, "gtol": 0})
    expected = table.reference_run("adam", np.zeros(5), lambda x, t: x - 1.0, steps=6, lr=0.1)
    np.testing.assert_array_equal(res.x.copy_to_host(), expected[-1])


@needs_cuda
def test_a_callable_lr_is_called_once_per_step_in_order_on_the_device():
    schedule = RecordingSchedule()
    res = adamnb.minimize(cuda_functions.rosenbrock, _cuda().to_device(table.X0), jac=True,
                          options={"lr": schedule, "maxiter": 7, "gtol": 0})
    assert schedule.calls == [1, 2, 3, 4, 5, 6, 7] and res.nit == 7
    expected = table.reference_run("adam", table.X0, lambda x, t: rosen_der(x), steps=7,
                                   lr=0.01)[-1]
    np.testing.assert_allclose(res.x.copy_to_host(), expected, rtol=table.RTOL)
