"""The paper's measures of a fit (method.md §6), computed by the engine's C++ (``lrsmc/metrics.hpp``),
so that the command line's ``lrsmc evaluate`` and these functions give the same numbers.

Series are ``(time, dims)`` arrays; a ``(trials, time, dims)`` array is concatenated over trials
first, as the paper's pipeline does. Counts and rates are ``(trials, time, neurons)``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from . import _core

__all__ = [
    "state_space_divergence",
    "power_spectrum_distance",
    "normalised_spectrum",
    "hann_smooth_and_standardise",
    "mean_rate_error",
    "spike_statistics",
    "pearson",
    "bits_per_spike",
    "psth_r2",
    "ridge_decoding",
]


def _series(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 3:
        array = array.reshape(-1, array.shape[-1])
    elif array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise _core.InvalidInputError(
            f"{name} must be (time, dims) or (trials, time, dims); got shape {array.shape}"
        )
    return array


def _counts(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise _core.InvalidInputError(
            f"{name} must be (trials, time, neurons) or (time, neurons); got shape {array.shape}"
        )
    return array


def state_space_divergence(
    truth,
    generated,
    *,
    samples: int = 1000,
    kernel_std: float = 1.0,
    max_points: int = 10000,
    seed: int = 0,
    reference_float32: bool = False,
) -> float:
    """D_stsp (method.md §6.3): the KL divergence of Gaussian-kernel density estimates of the
    recorded and the generated points, estimated at ``samples`` points drawn from the recorded
    estimate. Log space by default; ``reference_float32`` reproduces the reference's float32
    linear-space densities (points that underflow are dropped; NaN when all do). Lower is better."""
    value, _ = _core.state_space_divergence(
        _series(truth, "truth"),
        _series(generated, "generated"),
        samples=samples,
        kernel_std=kernel_std,
        max_points=max_points,
        seed=seed,
        reference_float32=reference_float32,
    )
    return value


def power_spectrum_distance(
    truth, generated, *, smoothing: float = 20.0, frequency_cutoff: int = 10000, per_dim: bool = False
):
    """D_H (method.md §6.4): the Hellinger distance of normalised, Gaussian-smoothed power
    spectra, averaged over dimensions (0 to 1, lower is better). ``frequency_cutoff`` keeps bins
    [0, cutoff) in Python slice semantics (the paper's EEG: -1). With ``per_dim`` returns
    ``(mean, per-dimension distances)``."""
    value, dims = _core.power_spectrum_distance(
        _series(truth, "truth"), _series(generated, "generated"), smoothing=smoothing,
        frequency_cutoff=frequency_cutoff,
    )
    return (value, np.asarray(dims)) if per_dim else value


def normalised_spectrum(series, *, smoothing: float = 20.0) -> np.ndarray:
    """The normalised, smoothed power spectrum of a 1-D series that D_H compares (n/2 + 1 bins
    of the even-length z-scored series)."""
    return np.asarray(_core.normalised_spectrum(np.asarray(series, dtype=np.float64), smoothing=smoothing))


def hann_smooth_and_standardise(series, window: int = 15) -> np.ndarray:
    """Each column convolved with an unnormalised Hann window (reflect boundary), then z-scored:
    the paper's processing of generated EEG before it is scored."""
    return _core.hann_smooth_and_standardise(_series(series, "series"), window)


def mean_rate_error(truth, generated) -> float:
    """Mean over dimensions of T·(difference of the means)² (method.md §6.5)."""
    return _core.mean_rate_error(_series(truth, "truth"), _series(generated, "generated"))


def spike_statistics(counts, bin_seconds: float, min_isis: int = 2) -> Dict[str, np.ndarray]:
    """Per-neuron mean rate (spikes/s), mean inter-spike interval (s) and its CV, and the
    pairwise Pearson correlations (i < j, row by row) of ``counts``."""
    stats = _core.spike_statistics(_counts(counts, "counts"), bin_seconds, min_isis)
    return {key: np.asarray(value) for key, value in stats.items()}


def pearson(x, y) -> float:
    """Pearson r over the entries where both are finite (NaN without variance)."""
    return _core.pearson(np.ravel(np.asarray(x, dtype=np.float64)), np.ravel(np.asarray(y, dtype=np.float64)))


def bits_per_spike(rates, counts) -> float:
    """Poisson log-likelihood gain of predicted rates (expected counts per bin) over each
    neuron's mean rate, in bits per spike (nlb_tools' co-bps and fp-bps). NaN counts are left
    out."""
    return _core.bits_per_spike(_counts(rates, "rates"), _counts(counts, "counts"))


def psth_r2(rates, counts, conditions: Sequence[int]) -> float:
    """R² of condition-averaged predicted rates against the recorded PSTHs, averaged over
    neurons."""
    return _core.psth_r2(_counts(rates, "rates"), _counts(counts, "counts"), [int(c) for c in conditions])


def ridge_decoding(
    train_features, train_targets, test_features, test_targets, *, alphas: Optional[Sequence[float]] = None,
    folds: int = 5,
) -> Dict[str, object]:
    """Linear decoding of a behavioural variable from latents or rates: ridge regression with an
    intercept, the penalty from ``alphas`` (default 10^-4 … 10^4) by contiguous ``folds``-fold
    cross-validation on the training rows. Returns ``{'r2', 'alpha', 'weights'}`` (R² on the test
    rows, variance weighted; weights (features + 1, targets), intercept last)."""
    return _core.ridge_decoding(
        _series(train_features, "train_features"),
        _series(train_targets, "train_targets"),
        _series(test_features, "test_features"),
        _series(test_targets, "test_targets"),
        [] if alphas is None else [float(a) for a in alphas],
        folds,
    )
