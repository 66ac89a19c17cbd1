"""zoo.evaluate: the expected calibration error against known answers."""

import numpy as np
import pytest
import torch

from zoo.evaluate import expected_calibration_error, reliability_curve, reliability_diagram


def _binary(confidence, p_correct, gen):
    """Two-class predictions: class 0 with probability `confidence`; the label is 0 with
    probability `p_correct`."""
    probs = torch.stack([confidence, 1 - confidence], 1)
    y = (torch.rand(len(confidence), generator=gen) >= p_correct).long()
    return probs, y


def test_ece_of_a_calibrated_predictor_is_zero():
    """Confidence c ~ U(0.5, 1), correct with probability c: ECE -> 0.  With 200 000 points
    and 15 bins the sampling noise is ~0.002: tolerance 0.01."""
    gen = torch.Generator().manual_seed(0)
    c = 0.5 + 0.5 * torch.rand(200_000, generator=gen, dtype=torch.float64)
    probs, y = _binary(c, c, gen)
    assert expected_calibration_error(probs, y) < 0.01


def test_ece_of_an_overconfident_predictor_matches_its_closed_form():
    """Correct with probability c^2 < c: every bin is over-confident, so the binned ECE is
    E[c - c^2] = 2 * int_{1/2}^{1} (c - c^2) dc = 1/6 exactly (any binning).  Tolerance 0.005
    (sampling noise ~0.001 at 200 000 points)."""
    gen = torch.Generator().manual_seed(1)
    c = 0.5 + 0.5 * torch.rand(200_000, generator=gen, dtype=torch.float64)
    probs, y = _binary(c, c.square(), gen)
    assert expected_calibration_error(probs, y) == pytest.approx(1 / 6, abs=0.005)


def test_ece_by_hand_on_four_predictions():
    """Bins (m-1)/M < c <= m/M.  Two bins used: {0.6 right, 0.6 wrong} -> |0.5 - 0.6|,
    {0.9 right, 1.0 right} -> |1 - 0.95|; ECE = (2 * 0.1 + 2 * 0.05) / 4 = 0.075 (exact)."""
    probs = torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.9, 0.1], [1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0])
    curve = reliability_curve(probs, y, num_bins=5)
    np.testing.assert_array_equal(curve.counts, [0, 0, 2, 0, 2])
    assert expected_calibration_error(probs, y, num_bins=5) == pytest.approx(0.075, abs=1e-6)
    # a confidence exactly on an edge falls in the bin it closes: 0.6 in (0.4, 0.6]
    assert curve.confidence[2] == pytest.approx(0.6, abs=1e-6)


def test_bad_input_is_refused():
    probs = torch.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="shape"):
        expected_calibration_error(probs, torch.zeros(3))
    with pytest.raises(ValueError, match="sum to 1"):
        expected_calibration_error(torch.ones(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="num_bins"):
        expected_calibration_error(probs, torch.zeros(4), num_bins=0)


def test_reliability_diagram_is_written(tmp_path):
    gen = torch.Generator().manual_seed(2)
    c = 0.5 + 0.5 * torch.rand(500, generator=gen, dtype=torch.float64)
    probs, y = _binary(c, c, gen)
    path = reliability_diagram(
        {"calibrated": probs, "sharp": probs.pow(3) / probs.pow(3).sum(1, keepdim=True)},
        y,
        tmp_path / "r.png",
    )
    assert path.stat().st_size > 5000
