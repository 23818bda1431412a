"""GPD distribution functions against scipy.stats.genpareto, closed forms and Monte Carlo."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from slgjax.tail.gpd import (
    gpd_cdf,
    gpd_log_prob,
    gpd_log_survival,
    gpd_quantile,
    gpd_quantile_from_survival,
    gpd_sample,
)

# Jitted once per function, so every xi value reuses one compilation.
JITTED = {
    function.__name__: jax.jit(function)
    for function in (
        gpd_log_prob,
        gpd_log_survival,
        gpd_cdf,
        gpd_quantile,
        gpd_quantile_from_survival,
    )
}

XI_VALUES = [-1.5, -1.0, -0.5, -1e-9, 0.0, 1e-9, 0.3, 1.2]
SIGMA = 1.7
FUNCTIONS = (gpd_log_prob, gpd_log_survival, gpd_cdf)


def support_points(xi):
    """Eight points below, inside, at and beyond the support of GPD(xi, SIGMA)."""
    # Near xi = 0 the endpoint (1.7e9) is not exact in floating point, so
    # scipy and slgjax may round it to opposite sides; those xi get no endpoint.
    if xi < -1e-3:
        endpoint = -SIGMA / xi
        scaled = [0.1, 0.5, 0.9, 1.0]
        return np.asarray(
            [-0.5, 0.0] + [endpoint * f for f in scaled] + [endpoint + 0.1, 2 * endpoint]
        )
    return np.asarray([-0.5, 0.0, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0]) * SIGMA


def scipy_reference(name, x, xi):
    distribution = scipy.stats.genpareto(xi, scale=SIGMA)
    return {
        "log_prob": distribution.logpdf,
        "log_survival": distribution.logsf,
        "cdf": distribution.cdf,
        "quantile": distribution.ppf,
        "quantile_from_survival": distribution.isf,
    }[name](x)


LEVELS = np.asarray([0.0, 1e-12, 0.25, 0.5, 0.9, 1 - 1e-9, 1.0])
SURVIVALS = np.asarray([1.0, 0.5, 1e-3, 1e-12, 1e-200, 0.0])


@pytest.mark.parametrize("xi", XI_VALUES)
def test_matches_scipy_float64(xi):
    with jax.enable_x64(True):
        y = support_points(xi)
        cases = [
            ("log_prob", JITTED["gpd_log_prob"], y),
            ("log_survival", JITTED["gpd_log_survival"], y),
            ("cdf", JITTED["gpd_cdf"], y),
            ("quantile", JITTED["gpd_quantile"], LEVELS),
            ("quantile_from_survival", JITTED["gpd_quantile_from_survival"], SURVIVALS),
        ]
        for name, function, points in cases:
            ours = np.asarray(function(jnp.asarray(points), xi=xi, sigma=SIGMA))
            expected = scipy_reference(name, points, xi)
            np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-300, err_msg=name)


def test_matches_scipy_float32():
    xi = np.repeat(XI_VALUES, 8)
    y = np.concatenate([support_points(value) for value in XI_VALUES])
    interior = (y > 0) & (xi * y / SIGMA > -0.95)
    xi, y = xi[interior], y[interior]
    for name in ("log_prob", "log_survival"):
        ours = JITTED[f"gpd_{name}"](jnp.asarray(y, jnp.float32), xi=xi, sigma=SIGMA)
        expected = scipy_reference(name, y, xi)
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6, err_msg=name)

    levels = np.tile([0.1, 0.5, 0.99], len(XI_VALUES))
    xi = np.repeat(XI_VALUES, 3)
    ours = JITTED["gpd_quantile"](jnp.asarray(levels, jnp.float32), xi=xi, sigma=SIGMA)
    np.testing.assert_allclose(ours, scipy_reference("quantile", levels, xi), rtol=1e-5)


def test_continuous_through_zero():
    y = jnp.asarray([0.0, 0.3, 2.0, 10.0])
    levels = jnp.asarray([0.1, 0.5, 0.999])
    for name in ("gpd_log_prob", "gpd_log_survival", "gpd_cdf", "gpd_quantile"):
        points = levels if name == "gpd_quantile" else y
        at_zero = JITTED[name](points, xi=0.0, sigma=SIGMA)
        for xi in (-1e-6, 1e-6):
            near_zero = JITTED[name](points, xi=xi, sigma=SIGMA)
            np.testing.assert_allclose(near_zero, at_zero, rtol=2e-5, atol=1e-6, err_msg=name)


def _all_gradients(function):
    """Jitted gradients of ``function(x, xi=, sigma=)`` in all three arguments, mapped over x."""
    gradient = jax.grad(lambda x, xi, sigma: function(x, xi=xi, sigma=sigma), argnums=(0, 1, 2))
    return jax.jit(jax.vmap(gradient, (0, 0, None)))


def test_shape_gradient_at_zero_matches_closed_form():
    # d/dxi log f(y) at xi = 0 is z^2 / 2 - z with z = y / sigma.
    y = jnp.asarray([0.2, 1.0, 4.0])
    gradient = _all_gradients(gpd_log_prob)
    z = np.asarray(y) / SIGMA
    xi = jnp.zeros_like(y)
    np.testing.assert_allclose(gradient(y, xi, SIGMA)[1], z**2 / 2 - z, rtol=1e-5)

    # d/dxi Q(p) at xi = 0 is sigma L^2 / 2 with L = -log(1 - p).
    levels = jnp.asarray([0.1, 0.5, 0.99])
    gradient = _all_gradients(gpd_quantile)
    minus_log = -np.log1p(-np.asarray(levels))
    xi = jnp.zeros_like(levels)
    np.testing.assert_allclose(gradient(levels, xi, SIGMA)[1], SIGMA * minus_log**2 / 2, rtol=1e-5)


def test_gradients_finite_everywhere():
    xi_values = [-1.5, -1.0, -0.5, 0.0, 0.3, 1.2]
    xi = jnp.asarray(np.repeat(xi_values, 8), jnp.float32)
    points = jnp.asarray(np.concatenate([support_points(v) for v in xi_values]), jnp.float32)
    for function in FUNCTIONS:
        for part in _all_gradients(function)(points, xi, jnp.float32(SIGMA)):
            assert np.all(np.isfinite(part)), function.__name__

    for function, levels in ((gpd_quantile, LEVELS), (gpd_quantile_from_survival, SURVIVALS)):
        xi = jnp.asarray(np.repeat(xi_values, len(levels)), jnp.float32)
        levels = jnp.asarray(np.tile(levels, len(xi_values)), jnp.float32)
        for part in _all_gradients(function)(levels, xi, jnp.float32(SIGMA)):
            # The derivative in p is +inf at p = 1 for xi > -1; it is never NaN.
            assert not np.any(np.isnan(part)), function.__name__


def test_tiny_survival_precise():
    with jax.enable_x64(True):
        survival = np.asarray([1e-30, 1e-100, 1e-300])
        for xi in (-0.5, 0.0, 0.3):
            ours = gpd_quantile_from_survival(jnp.asarray(survival), xi=xi, sigma=SIGMA)
            expected = scipy.stats.genpareto.isf(survival, xi, scale=SIGMA)
            np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_zero_scale_is_point_mass():
    y = jnp.asarray([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gpd_log_prob(y, xi=0.2, sigma=0.0), [-np.inf, np.inf, -np.inf])
    np.testing.assert_array_equal(gpd_cdf(y, xi=0.2, sigma=0.0), [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(
        gpd_quantile(jnp.asarray([0.0, 0.7, 1.0]), xi=0.2, sigma=0.0), 0.0
    )


@pytest.mark.parametrize("xi", [-0.5, 0.0, 0.2])
def test_sample_moments_and_distribution(xi):
    size = 100_000
    samples = np.asarray(
        gpd_sample(jax.random.key(0), xi=xi, sigma=SIGMA, shape=(size,)), np.float64
    )
    mean = SIGMA / (1 - xi)
    variance = SIGMA**2 / ((1 - xi) ** 2 * (1 - 2 * xi))
    # Five standard errors of the mean and of the variance (fourth moment finite for xi < 1/4).
    assert abs(samples.mean() - mean) < 5 * np.sqrt(variance / size)
    kurtosis = scipy.stats.genpareto.stats(xi, moments="k") + 3
    variance_error = np.sqrt((kurtosis - 1) * variance**2 / size)
    assert abs(samples.var() - variance) < 5 * variance_error
    assert scipy.stats.kstest(samples, scipy.stats.genpareto(xi, scale=SIGMA).cdf).pvalue > 1e-3


def test_sample_shape_and_support():
    xi = jnp.asarray([-1.0, -0.5, 0.0, 1.5])
    samples = gpd_sample(jax.random.key(1), xi=xi, sigma=2.0, shape=(1000,))
    assert samples.shape == (1000, 4)
    assert np.all(np.isfinite(samples)) and np.all(samples >= 0)
    assert np.all(samples[:, :2] <= -2.0 / np.asarray(xi[:2]))


def test_jit_and_vmap_agree_with_eager():
    y = jnp.linspace(0.0, 3.0, 7)
    xi = jnp.asarray([-0.3, 0.0, 0.4])
    eager = gpd_log_prob(y[None, :], xi=xi[:, None], sigma=1.3)
    jitted = jax.jit(lambda y, xi: gpd_log_prob(y, xi=xi, sigma=1.3))(y[None, :], xi[:, None])
    mapped = jax.vmap(lambda xi: gpd_log_prob(y, xi=xi, sigma=1.3))(xi)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    np.testing.assert_allclose(mapped, eager, rtol=1e-6)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="sigma"):
        gpd_log_prob(1.0, xi=0.1, sigma=-1.0)
    with pytest.raises(ValueError, match="outside"):
        gpd_quantile(jnp.asarray([0.5, 1.5]), xi=0.1, sigma=1.0)
    with pytest.raises(ValueError, match="outside"):
        gpd_quantile_from_survival(-0.1, xi=0.1, sigma=1.0)
