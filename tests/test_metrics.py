"""AUROC against scipy's Mann-Whitney U, calibration against a direct loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from slgjax.metrics import Calibration, auroc, calibration


def mann_whitney_auroc(scores, labels):
    labels = np.asarray(labels, bool)
    positives, negatives = scores[labels], scores[~labels]
    statistic = stats.mannwhitneyu(positives, negatives).statistic
    return statistic / (positives.size * negatives.size)


@pytest.mark.parametrize("seed", range(4))
def test_auroc_matches_mann_whitney(seed):
    rng = np.random.default_rng(seed)
    size = [7, 50, 333, 1000][seed]
    labels = rng.random(size) < 0.3
    labels[:2] = [True, False]
    # Rounded scores make many ties; each tie must count one half.
    scores = np.round(rng.normal(size=size) + labels, 1)

    expected = mann_whitney_auroc(scores, labels)
    np.testing.assert_allclose(auroc(scores, labels), expected, rtol=1e-6)
    np.testing.assert_allclose(auroc(scores, labels.astype(np.float32)), expected, rtol=1e-6)


def test_auroc_closed_form_cases():
    labels = np.array([0, 0, 1, 1])
    assert float(auroc([0.1, 0.2, 0.3, 0.4], labels)) == 1.0
    assert float(auroc([0.4, 0.3, 0.2, 0.1], labels)) == 0.0
    assert float(auroc([1.0, 1.0, 1.0, 1.0], labels)) == 0.5
    # One positive above one negative and tied with the other: (1 + 0.5) / 2 per positive.
    assert float(auroc([0.0, 1.0, 1.0, 1.0], labels)) == 0.75


def test_auroc_under_jit_and_vmap():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(3, 40))
    labels = rng.random((3, 40)) < 0.5
    expected = [mann_whitney_auroc(s, y) for s, y in zip(scores, labels, strict=True)]

    np.testing.assert_allclose(jax.vmap(auroc)(scores, labels), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(auroc)(scores[0], labels[0]), expected[0], rtol=1e-6)
    assert np.isnan(jax.jit(auroc)(scores[0], jnp.ones(40, bool)))


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.zeros(3), np.zeros(4), r"shape \(3,\) and labels of shape \(4,\)"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "must be matching 1-D arrays"),
        (np.array([0.0, np.inf]), np.array([0, 1]), r"scores\[1\] is inf"),
        (np.zeros(3), np.array([0, 1, 2]), r"labels\[2\] is 2"),
        (np.zeros(3), np.ones(3), "labels hold 3 positives among 3"),
        (np.zeros(3), np.zeros(3), "labels hold 0 positives among 3"),
    ],
)
def test_auroc_rejects_bad_inputs(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        auroc(scores, labels)


def calibration_loop(probabilities, labels, num_bins):
    """ECE and Brier score, one prediction at a time."""
    counts = np.zeros(num_bins)
    confidence = np.zeros(num_bins)
    positives = np.zeros(num_bins)
    for p, y in zip(probabilities, labels, strict=True):
        b = min(int(p * num_bins), num_bins - 1)
        counts[b] += 1
        confidence[b] += p
        positives[b] += y
    occupied = counts > 0
    gap = np.abs(positives[occupied] - confidence[occupied]) / counts[occupied]
    ece = np.sum(counts[occupied] / len(labels) * gap)
    brier = np.mean((np.asarray(probabilities) - np.asarray(labels)) ** 2)
    return ece, brier, counts


def test_calibration_matches_loop():
    rng = np.random.default_rng(0)
    # Probabilities away from bin edges, so float32 and float64 agree on the bin.
    probabilities = (rng.integers(0, 200, 300) + 0.5) / 200
    probabilities[:3] = [0.0, 1.0, 0.05]
    labels = rng.random(300) < probabilities**2
    result = calibration(probabilities, labels, num_bins=7)
    ece, brier, counts = calibration_loop(probabilities, labels, 7)

    assert isinstance(result, Calibration)
    np.testing.assert_allclose(result.ece, ece, rtol=1e-5)
    np.testing.assert_allclose(result.brier, brier, rtol=1e-5)
    np.testing.assert_array_equal(result.bin_counts, counts)
    np.testing.assert_allclose(result.bin_edges, np.linspace(0, 1, 8), atol=1e-7)


def test_calibration_of_calibrated_predictions_is_small():
    key_p, key_y = jax.random.split(jax.random.key(0))
    probabilities = jax.random.uniform(key_p, (20000,))
    labels = jax.random.bernoulli(key_y, probabilities)
    result = calibration(probabilities, labels)

    # Ten bins of about 2000 draws: each gap has a standard error below 0.012.
    assert float(result.ece) < 0.02
    # E[(p - y)^2] = E[p (1 - p)] = 1/6 for p uniform on [0, 1].
    np.testing.assert_allclose(result.brier, 1 / 6, atol=0.01)


def test_calibration_empty_bins_and_one_class():
    result = calibration(np.array([0.05, 0.05, 0.95]), np.array([1, 1, 1]), num_bins=4)

    np.testing.assert_array_equal(result.bin_counts, [2, 0, 0, 1])
    assert np.isnan(result.bin_confidence[1])
    assert np.isnan(result.bin_accuracy[2])
    np.testing.assert_allclose(np.asarray(result.bin_accuracy)[[0, 3]], [1.0, 1.0])
    np.testing.assert_allclose(result.ece, (2 * 0.95 + 0.05) / 3, rtol=1e-6)
    assert np.isfinite(jax.jit(calibration)(jnp.array([0.2, 0.7]), jnp.array([0, 1])).ece)


@pytest.mark.parametrize(
    ("probabilities", "labels", "options", "message"),
    [
        (np.array([0.5, 1.2]), np.array([0, 1]), {}, r"probabilities\[1\] is 1.2"),
        (np.array([-0.1, 0.2]), np.array([0, 1]), {}, "must lie in"),
        (np.array([0.5, 0.2]), np.array([0, 1, 1]), {}, "must be matching 1-D arrays"),
        (np.array([0.5, np.nan]), np.array([0, 1]), {}, r"probabilities\[1\] is nan"),
        (np.array([0.5]), np.array([3]), {}, r"labels\[0\] is 3"),
        (np.zeros(0), np.zeros(0), {}, "probabilities is empty"),
        (np.array([0.5]), np.array([1]), {"num_bins": 0}, "num_bins must be a positive int"),
    ],
)
def test_calibration_rejects_bad_inputs(probabilities, labels, options, message):
    with pytest.raises(ValueError, match=message):
        calibration(probabilities, labels, **options)
