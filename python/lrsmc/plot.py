"""Figures of a fitted model with matplotlib (``pip install lrsmc[plot]``): the ELBO curve, latent
trajectories, recorded against generated data, and the fixed points in the latent plane.

Every function draws into ``ax`` (or ``axes``) when given, else into a new figure, and returns
what it drew into, so figures compose::

    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2)
    lrsmc.plot.elbo(rnn.history_, ax=left)
    lrsmc.plot.fixed_points(rnn.model_, latents=rnn.transform(X), ax=right)
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np

from . import _api, _core

try:
    import matplotlib.pyplot as plt
except ImportError as error:  # pragma: no cover - exercised only without matplotlib
    raise ImportError("lrsmc.plot needs matplotlib: pip install 'lrsmc[plot]'") from error

#: Marker colour of each stability class (fixed_points.hpp, Stability).
STABILITY_COLOURS = {
    "stable_node": "tab:blue",
    "stable_spiral": "tab:cyan",
    "saddle": "tab:orange",
    "unstable_node": "tab:red",
    "unstable_spiral": "tab:pink",
    "non_hyperbolic": "tab:gray",
}


def _axes(ax, **figure_options):
    if ax is not None:
        return ax
    _, ax = plt.subplots(**figure_options)
    return ax


def _with_trial_axis(values) -> np.ndarray:
    """An array of (trials, steps, ·); one (steps, ·) sequence becomes a single trial (a view)."""
    array = np.asarray(values)
    return array[None] if array.ndim == 2 else array


def elbo(history: Union[Dict[str, np.ndarray], "object"], ax=None):
    """The ELBO per time step against the epoch: training (every epoch) and held-out (where
    evaluated). ``history`` is ``LowRankRNN.history_``, a ``TrainingOutcome.history`` or an
    estimator."""
    history = getattr(history, "history_", history)
    ax = _axes(ax, figsize=(6, 4))
    epochs = history["epoch"]
    ax.plot(epochs, history["train_elbo"], label="training", color="tab:blue")
    held = history["held_out_elbo"]
    evaluated = np.isfinite(held)
    if evaluated.any():
        ax.plot(epochs[evaluated], held[evaluated], "o-", label="held-out", color="tab:orange", markersize=3)
    # The first epochs often lie far below the rest and would flatten the part worth reading:
    # when the first tenth spans most of the range, the axis shows the other nine tenths.
    train = history["train_elbo"]
    later = np.concatenate([train[len(train) // 10 :], held[evaluated]])
    if len(train) >= 10 and np.ptp(train) > 10 * np.ptp(later):
        pad = 0.1 * max(np.ptp(later), 1e-9)
        ax.set_ylim(later.min() - pad, later.max() + pad)
        ax.annotate("first epochs below the axis", xy=(0.02, 0.03), xycoords="axes fraction",
                    fontsize="small", color="0.4")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO per time step")
    ax.set_title("training curve")
    ax.legend()
    return ax


def latents(
    latents: np.ndarray,
    trials: Union[int, Sequence[int]] = 5,
    dims: Sequence[int] = (0, 1),
    ax=None,
    title: str = "latent trajectories",
):
    """Latent trajectories (trials, steps, rank) in the plane of two latent dimensions, one line
    per trial, with a dot at each start. A rank-1 model is drawn against time instead."""
    latents = _with_trial_axis(latents)
    chosen = range(min(trials, latents.shape[0])) if isinstance(trials, int) else list(trials)
    ax = _axes(ax, figsize=(5, 5))
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(chosen))))
    for colour, trial in zip(colours, chosen):
        path = latents[trial]
        if path.shape[1] == 1:
            ax.plot(path[:, 0], color=colour, lw=1)
        else:
            ax.plot(path[:, dims[0]], path[:, dims[1]], color=colour, lw=1, alpha=0.8)
            ax.plot(path[0, dims[0]], path[0, dims[1]], "o", color=colour, markersize=4)
    if latents.shape[2] == 1:
        ax.set_xlabel("time step")
        ax.set_ylabel("z")
    else:
        ax.set_xlabel(f"z{dims[0] + 1}")
        ax.set_ylabel(f"z{dims[1] + 1}")
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    return ax


def samples(
    data: np.ndarray,
    generated: np.ndarray,
    channels: Union[int, Sequence[int]] = 4,
    trial: int = 0,
    axes=None,
):
    """Recorded against generated activity: one row per channel, the recording of ``trial`` on
    the left and a generated sequence on the right (both (trials, steps, channels)). Returns the
    axes array."""
    data, generated = _with_trial_axis(data), _with_trial_axis(generated)
    chosen = list(range(min(channels, data.shape[2]))) if isinstance(channels, int) else list(channels)
    if axes is None:
        _, axes = plt.subplots(len(chosen), 2, figsize=(9, 1.6 * len(chosen) + 0.8), sharex="col", sharey="row", squeeze=False)
    for row, channel in enumerate(chosen):
        axes[row, 0].plot(data[trial, :, channel], color="black", lw=1)
        axes[row, 1].plot(generated[min(trial, generated.shape[0] - 1), :, channel], color="tab:green", lw=1)
        axes[row, 0].set_ylabel(f"ch {channel}")
    axes[0, 0].set_title("recorded")
    axes[0, 1].set_title("generated by the model")
    axes[-1, 0].set_xlabel("time step")
    axes[-1, 1].set_xlabel("time step")
    return axes


def fixed_points(
    model: _core.Model,
    points: Optional[Iterable[_core.FixedPoint]] = None,
    latents: Optional[np.ndarray] = None,
    input=None,
    flow: bool = True,
    grid: int = 21,
    trials: int = 5,
    ax=None,
):
    """The fixed points of ``model`` in the plane of its first two latent dimensions, coloured by
    stability, over the flow F(z) − z of the deterministic latent map (rank-2 models) and, when
    given, filtered latent trajectories. ``points`` defaults to :func:`lrsmc.fixed_points`."""
    if model.config.rank < 2:
        raise _core.InvalidInputError(
            f"plot.fixed_points: the model has rank {model.config.rank}; expected rank ≥ 2 for a latent plane"
        )
    points = list(_api.fixed_points(model, input) if points is None else points)
    ax = _axes(ax, figsize=(5.5, 5))
    extent = [np.array([p.z[:2] for p in points]).reshape(-1, 2)]
    if latents is not None:
        latents = np.asarray(latents)
        extent.append(latents[..., :2].reshape(-1, 2))
    corners = np.concatenate(extent) if sum(e.size for e in extent) else np.zeros((1, 2))
    low, high = corners.min(axis=0), corners.max(axis=0)
    margin = 0.15 * np.maximum(high - low, 1e-3) + 0.1
    low, high = low - margin, high + margin
    if flow and model.config.rank == 2:
        x, y = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
        z = np.stack([x, y], axis=-1)
        step = _api.latent_map(model, z, input) - z
        ax.quiver(x, y, step[..., 0], step[..., 1], color="0.6", angles="xy", width=0.003)
    if latents is not None:
        for trial in range(min(trials, latents.shape[0])):
            ax.plot(latents[trial, :, 0], latents[trial, :, 1], color="tab:purple", lw=0.8, alpha=0.5)
    seen = set()
    for point in points:
        label = None if point.stability in seen else point.stability.replace("_", " ")
        seen.add(point.stability)
        filled = point.stability.startswith("stable")
        colour = STABILITY_COLOURS[point.stability]
        ax.plot(point.z[0], point.z[1], "o", markersize=9, markeredgecolor=colour, markeredgewidth=2,
                markerfacecolor=colour if filled else "white", label=label, zorder=3)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(f"fixed points ({len(points)})")
    if points:
        ax.legend(loc="best", fontsize="small")
    return ax


def _time_axis(steps: int, bin_seconds: Optional[float]):
    """Bin centres in seconds when the bin width is known, else step indices, and the label."""
    if bin_seconds:
        return np.arange(steps) * bin_seconds, "time (s)"
    return np.arange(steps), "time step"


def raster(
    recorded: np.ndarray,
    generated: np.ndarray,
    trial: int = 0,
    bin_seconds: Optional[float] = None,
    axes=None,
):
    """Spike counts of one trial as rasters, neurons × time, recorded on the left and generated on
    the right (both (trials, steps, neurons)); darker is more spikes. Returns the two axes."""
    recorded, generated = _with_trial_axis(recorded), _with_trial_axis(generated)
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    steps = recorded.shape[1]
    end = steps * bin_seconds if bin_seconds else steps
    top = max(float(recorded[trial].max()), float(generated[min(trial, len(generated) - 1)].max()), 1.0)
    for ax, counts, title in ((axes[0], recorded[trial], "recorded"),
                              (axes[1], generated[min(trial, len(generated) - 1)], "generated by the model")):
        ax.imshow(counts.T, aspect="auto", cmap="Greys", vmin=0, vmax=top, interpolation="nearest",
                  extent=(0, end, counts.shape[1] - 0.5, -0.5))
        ax.set_title(title)
        ax.set_xlabel(_time_axis(steps, bin_seconds)[1])
    axes[0].set_ylabel("neuron")
    return axes


def psth(
    recorded: np.ndarray,
    generated: np.ndarray,
    neurons: Union[int, Sequence[int]] = 4,
    bin_seconds: Optional[float] = None,
    axes=None,
):
    """Trial-averaged activity (the PSTH for counts) of a few channels, recorded against
    generated, one panel per channel; in spikes per second when ``bin_seconds`` is given."""
    recorded, generated = _with_trial_axis(recorded), _with_trial_axis(generated)
    chosen = list(range(min(neurons, recorded.shape[2]))) if isinstance(neurons, int) else list(neurons)
    if axes is None:
        _, axes = plt.subplots(1, len(chosen), figsize=(3 * len(chosen), 2.8), squeeze=False)
        axes = axes[0]
    time, label = _time_axis(recorded.shape[1], bin_seconds)
    scale = 1.0 / bin_seconds if bin_seconds else 1.0
    for ax, channel in zip(axes, chosen):
        ax.plot(time, recorded[:, :, channel].mean(0) * scale, color="black", lw=1.2, label="recorded")
        ax.plot(time, generated[:, :, channel].mean(0) * scale, color="tab:green", lw=1.2, label="generated")
        ax.set_title(f"channel {channel}")
        ax.set_xlabel(label)
    axes[0].set_ylabel("spikes / s" if bin_seconds else "mean per bin")
    axes[0].legend(fontsize="small")
    return axes


def power_spectra(
    recorded: np.ndarray,
    generated: np.ndarray,
    channels: Union[int, Sequence[int]] = 4,
    smoothing: float = 20.0,
    bin_seconds: Optional[float] = None,
    axes=None,
):
    """The normalised, smoothed power spectra that D_H compares (lrsmc.metrics), recorded against
    generated, trials concatenated, one panel per channel; in Hz when ``bin_seconds`` is given."""
    from . import metrics

    recorded = _with_trial_axis(recorded).reshape(-1, np.shape(recorded)[-1])
    generated = _with_trial_axis(generated).reshape(-1, np.shape(generated)[-1])
    chosen = list(range(min(channels, recorded.shape[1]))) if isinstance(channels, int) else list(channels)
    if axes is None:
        _, axes = plt.subplots(1, len(chosen), figsize=(3 * len(chosen), 2.8), squeeze=False)
        axes = axes[0]
    for ax, channel in zip(axes, chosen):
        for series, colour, label in ((recorded, "black", "recorded"), (generated, "tab:green", "generated")):
            spectrum = metrics.normalised_spectrum(series[:, channel], smoothing=smoothing)
            n = 2 * (len(spectrum) - 1)
            frequency = np.arange(len(spectrum)) / (n * bin_seconds) if bin_seconds else np.arange(len(spectrum)) / n
            ax.plot(frequency, spectrum, color=colour, lw=1.2, label=label)
        ax.set_title(f"channel {channel}")
        ax.set_xlabel("frequency (Hz)" if bin_seconds else "frequency (cycles / step)")
    axes[0].set_ylabel("normalised power")
    axes[0].legend(fontsize="small")
    return axes


def smoothed_latents(
    smoothed,
    trial: int = 0,
    bin_seconds: Optional[float] = None,
    band: float = 0.9,
    axes=None,
):
    """Smoothed latents of one trial against time: the mean of the smoother's trajectories and
    the central ``band`` of them (5–95 % by default) for each latent dimension. ``smoothed`` is a
    :class:`lrsmc.SmoothResult`."""
    trajectories = np.asarray(smoothed.trajectories)[trial]  # (trajectories, steps, rank)
    rank = trajectories.shape[2]
    if axes is None:
        _, axes = plt.subplots(rank, 1, figsize=(8, 1.6 * rank + 0.6), sharex=True, squeeze=False)
        axes = axes[:, 0]
    time, label = _time_axis(trajectories.shape[1], bin_seconds)
    low, high = np.quantile(trajectories, [(1 - band) / 2, (1 + band) / 2], axis=0)
    for r, ax in enumerate(axes):
        ax.fill_between(time, low[:, r], high[:, r], color="tab:purple", alpha=0.25, lw=0)
        ax.plot(time, np.asarray(smoothed.latents)[trial, :, r], color="tab:purple", lw=1.2)
        ax.set_ylabel(f"z{r + 1}")
    axes[0].set_title(f"smoothed latents, trial {trial} (mean and {band:.0%} band)")
    axes[-1].set_xlabel(label)
    return axes
