"""lrsmc.metrics against the libraries the paper's pipeline uses (numpy's rfft, scipy.ndimage,
scipy.signal's Hann window, scikit-learn's Ridge and r2_score), and lrsmc.evaluate: the same
numbers as ``lrsmc evaluate`` and as the estimator's evaluate."""

import json
import os
import subprocess

import numpy as np
import pytest
from scipy import ndimage, signal
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

import lrsmc
from lrsmc import metrics


def reference_spectrum(x, sigma):
    """method.md §6.4 steps 1–3 with numpy and scipy."""
    x = np.asarray(x, dtype=np.float64)
    x = (x - x.mean()) / x.std()
    if len(x) % 2:
        x = x[:-1]
    power = np.abs(np.fft.rfft(x, norm="ortho")) ** 2 * 2
    power = ndimage.gaussian_filter1d(power, sigma, mode="reflect", truncate=4.0)
    power[power < 0] = 0
    return power / (power.sum() + 1e-8)


def test_spectrum_and_hellinger_distance_match_numpy_and_scipy():
    rng = np.random.default_rng(0)
    t = np.arange(501)
    truth = np.stack([np.sin(0.2 * t) + 0.3 * rng.standard_normal(501), rng.standard_normal(501)], 1)
    generated = np.stack([np.sin(0.25 * t) + 0.3 * rng.standard_normal(501), np.cumsum(rng.standard_normal(501))], 1)
    for sigma in (3.0, 20.0):
        np.testing.assert_allclose(metrics.normalised_spectrum(truth[:, 0], smoothing=sigma),
                                   reference_spectrum(truth[:, 0], sigma), rtol=1e-10, atol=1e-15)
        expected = []
        for d in range(2):
            p, q = reference_spectrum(truth[:, d], sigma)[:-1], reference_spectrum(generated[:, d], sigma)[:-1]
            p, q = p / p.sum(), q / q.sum()
            expected.append(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)) / np.sqrt(2))
        value, per_dim = metrics.power_spectrum_distance(truth, generated, smoothing=sigma, frequency_cutoff=-1,
                                                         per_dim=True)
        np.testing.assert_allclose(per_dim, expected, rtol=1e-9)
        assert value == pytest.approx(np.mean(expected), rel=1e-9)


def test_hann_smoothing_matches_scipy():
    x = np.random.default_rng(1).standard_normal((60, 3))
    smoothed = ndimage.convolve1d(x, signal.windows.hann(15), axis=0, mode="reflect")
    expected = (smoothed - smoothed.mean(0)) / smoothed.std(0)
    np.testing.assert_allclose(metrics.hann_smooth_and_standardise(x, 15), expected, rtol=1e-10, atol=1e-12)


def test_state_space_divergence_of_a_set_with_itself_is_zero_and_trials_concatenate():
    x = np.random.default_rng(2).standard_normal((3, 40, 2))
    assert metrics.state_space_divergence(x, x) == 0.0
    shifted = x + 0.5
    assert metrics.state_space_divergence(x, shifted) == metrics.state_space_divergence(x.reshape(120, 2), shifted.reshape(120, 2))
    assert metrics.state_space_divergence(x, shifted) > 0
    with pytest.raises(lrsmc.InvalidInputError, match="samples must be between 1 and 10\\^7; got 0"):
        metrics.state_space_divergence(x, shifted, samples=0)


def test_ridge_and_r2_match_scikit_learn():
    rng = np.random.default_rng(3)
    X, Xt = rng.standard_normal((80, 3)), rng.standard_normal((20, 3))
    w = np.array([[1.0, -0.5], [0.3, 2.0], [0.0, 1.0]])
    Y, Yt = X @ w + 0.3 * rng.standard_normal((80, 2)) + 1.0, Xt @ w + 0.3 * rng.standard_normal((20, 2)) + 1.0
    result = metrics.ridge_decoding(X, Y, Xt, Yt, alphas=[2.5])
    reference = Ridge(alpha=2.5).fit(X, Y)
    np.testing.assert_allclose(result["weights"][:3], reference.coef_.T, rtol=1e-10)
    np.testing.assert_allclose(result["weights"][3], reference.intercept_, rtol=1e-10)
    assert result["r2"] == pytest.approx(r2_score(Yt, reference.predict(Xt), multioutput="variance_weighted"), rel=1e-10)


def test_psth_r2_and_bits_per_spike_against_direct_computations():
    rng = np.random.default_rng(4)
    counts = rng.poisson(2.0, size=(6, 10, 3)).astype(float)
    rates = rng.uniform(0.5, 3.0, size=(6, 10, 3))
    conditions = [0, 1, 0, 1, 2, 2]
    psth = np.stack([counts[np.equal(conditions, c)].mean(0) for c in range(3)]).reshape(-1, 3)
    predicted = np.stack([rates[np.equal(conditions, c)].mean(0) for c in range(3)]).reshape(-1, 3)
    assert metrics.psth_r2(rates, counts, conditions) == pytest.approx(r2_score(psth, predicted), rel=1e-10)
    mean = counts.mean(axis=(0, 1), keepdims=True)
    nll = lambda r: np.sum(r - counts * np.log(r))  # noqa: E731
    expected = (nll(np.broadcast_to(mean, counts.shape)) - nll(rates)) / counts.sum() / np.log(2)
    assert metrics.bits_per_spike(rates, counts) == pytest.approx(expected, rel=1e-10)


def test_spike_statistics_rates_and_correlations():
    counts = np.random.default_rng(5).poisson(0.5, size=(4, 50, 3)).astype(float)
    stats = metrics.spike_statistics(counts, 0.01)
    np.testing.assert_allclose(stats["mean_rate"], counts.mean(axis=(0, 1)) / 0.01, rtol=1e-12)
    flat = counts.reshape(-1, 3)
    corr = np.corrcoef(flat.T)
    np.testing.assert_allclose(stats["pair_correlation"], corr[np.triu_indices(3, 1)], rtol=1e-10)


@pytest.fixture(scope="module")
def teacher_recording(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    demo = lrsmc.demo_data(trials=8, steps=40, seed=2)
    teacher, data = demo.teacher, demo.observations
    lrsmc.save_model(teacher, folder / "teacher.npz")
    np.save(folder / "data.npy", data)
    return folder, teacher, data


def test_evaluate_gives_the_command_lines_numbers(teacher_recording):
    folder, teacher, data = teacher_recording
    python = lrsmc.evaluate(teacher, data, particles=100, repeats=2, seed=3, device="cpu")
    assert set(python.metrics) == {"d_stsp", "d_stsp_reference_float32", "d_h", "mean_rate_error"}
    assert python.metrics["d_h"]["median"] < python.metrics["d_h"]["baseline_median"]
    assert "ELBO" in str(python)
    cli = os.environ.get("LRSMC_CLI", "")
    if not cli:
        pytest.skip("LRSMC_CLI is not set: the command-line comparison needs the CMake-built lrsmc")
    subprocess.run([cli, "evaluate", "--model", "teacher.npz", "--data", "data.npy", "--particles", "100",
                    "--repeats", "2", "--seed", "3", "--device", "cpu", "--out-json", "e.json"],
                   cwd=folder, check=True, capture_output=True)
    written = json.loads((folder / "e.json").read_text())
    assert written["elbo_per_step"] == python.elbo
    for name, entry in python.metrics.items():
        assert written["metrics"][name]["values"] == entry["values"], name
        assert written["metrics"][name]["baseline"]["values"] == entry["baseline_values"], name


@pytest.mark.filterwarnings("ignore:a short run")
def test_estimator_evaluate_scores_counts():
    counts = np.random.default_rng(6).poisson(1.0, size=(10, 30, 4)).astype(float)
    rnn = lrsmc.LowRankRNN(rank=2, num_hidden=8, observation="poisson", link="softplus", epochs=2,
                           particles=8, seed=1, device="cpu").fit(counts)
    result = rnn.evaluate(counts, particles=50, bin_seconds=0.02)
    assert list(result.metrics) == ["mean_rate_r", "mean_isi_r", "pair_correlation_r", "mean_rate_error",
                                    "bits_per_spike_smoothed"]
    assert result.metrics["bits_per_spike_smoothed"]["baseline_values"] == [0.0]
    with pytest.raises(lrsmc.InvalidInputError, match="repeats"):
        rnn.evaluate(counts, repeats=0)


def test_missing_values_and_held_out_channels(teacher_recording):
    folder, teacher, data = teacher_recording
    with_nan = data.copy()
    with_nan[:, :, 3] = np.nan
    with pytest.raises(lrsmc.InvalidInputError, match="allow-missing"):
        lrsmc.as_dataset(with_nan)
    masked = lrsmc.as_dataset(with_nan, allow_missing=True)
    smoothed = lrsmc.smooth(teacher, masked, particles=100, trajectories=5, seed=1, device="cpu")
    assert np.isfinite(smoothed.elbo)
    # evaluate's held-out channel is the same posterior: the channel missing.
    result = lrsmc.evaluate(teacher, data, particles=100, trajectories=5, held_out_channels=[3], seed=1,
                            device="cpu")
    assert result.elbo == smoothed.elbo
    assert result.metrics["held_out_r2"]["values"][0] > 0.5


def test_evaluate_forward_prediction_psth_and_decoding(teacher_recording):
    folder, teacher, data = teacher_recording
    drawn = lrsmc.sample(teacher, 8, 40, seed=5)
    result = lrsmc.evaluate(teacher, drawn.observations, particles=100, trajectories=4, forward_steps=4,
                            conditions=[0, 1] * 4, behaviour=drawn.latents, device="cpu")
    for name in ("forward_r2", "psth_r2", "decoding_r2"):
        assert np.isfinite(result.metrics[name]["values"][0]), name
    assert result.metrics["decoding_r2"]["values"][0] > 0.9
    with pytest.raises(lrsmc.InvalidInputError, match="behaviour must be"):
        lrsmc.evaluate(teacher, drawn.observations, behaviour=drawn.latents[:3], device="cpu")


@pytest.mark.filterwarnings("ignore:a short run")
def test_estimator_adds_no_encoder_for_data_with_missing_values():
    counts = np.random.default_rng(7).poisson(1.0, size=(8, 30, 4)).astype(float)
    counts[:, :5, 2] = np.nan
    data = lrsmc.as_dataset(counts, allow_missing=True)
    assert data.has_missing and data.allow_missing
    # At 1e-3 "auto" trains an encoder for complete counts; with missing values it cannot.
    rnn = lrsmc.LowRankRNN(rank=2, num_hidden=8, observation="poisson", epochs=1, particles=4,
                           learning_rate=1e-3, seed=2, device="cpu").fit(data)
    assert rnn.model_.config.encoder is None
    assert np.isfinite(rnn.history_["train_elbo"]).all()
