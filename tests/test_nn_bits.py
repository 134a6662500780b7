"""The MLP and softmax regression keep the bits they had before the layer stack (commit 8cfc71c).

``tests/data/mlp_bits.npz`` holds outputs of that commit's code on fixed inputs, written by
``tests/data/record_mlp_bits.py`` (which calls public methods only and is rerun here on the
current code). On the recording platform (same BLAS build and CPU) every array must be identical
to the bit; elsewhere the matrix products may round differently, so the check is close agreement.
This is a regression guard only: correctness is tested against finite differences and an
independent forward pass in ``tests/test_nn.py``.
"""

from pathlib import Path

import numpy as np
import pytest

from tests.data import record_mlp_bits

RECORDED = Path(__file__).parent / "data" / "mlp_bits.npz"


@pytest.fixture(scope="module")
def outputs():
    recorded = dict(np.load(RECORDED))
    return recorded, record_mlp_bits.record()


def test_every_recorded_output_is_reproduced(outputs):
    recorded, now = outputs
    assert set(recorded) == set(now)
    same_platform = str(recorded["platform"]) == str(now["platform"])
    for key in sorted(recorded):
        if key == "platform":
            continue
        if same_platform:
            assert recorded[key].dtype == now[key].dtype, key
            assert recorded[key].tobytes() == now[key].tobytes(), key
        else:
            # A matrix product summed in another order (another BLAS kernel for another CPU)
            # moves a result by a few units in the last place of its largest terms: a float32
            # logit near 0 may move by 1e-7 when its terms are near 1.
            scale = float(np.max(np.abs(recorded[key]), initial=0.0))
            atol = max(1e-7, 4 * np.finfo(recorded[key].dtype).eps * scale) \
                if np.issubdtype(recorded[key].dtype, np.floating) else 0
            np.testing.assert_allclose(now[key], recorded[key], rtol=2e-5, atol=atol,
                                       err_msg=key)
