"""One HTML page that judges a fit (``pip install lrsmc[plot]``): the measures of
:func:`lrsmc.evaluate` beside their baselines, and the figures a neuroscientist looks at first:
recorded against generated activity (spike rasters and PSTHs for counts, traces otherwise),
power spectra, smoothed latents with their bands, the latent state space, the training curve and
the fixed points.

    import lrsmc
    rnn = lrsmc.LowRankRNN(...).fit(X_train)
    page = lrsmc.report(rnn, X_test, "report/", bin_seconds=0.01)   # report/index.html
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import _api, _core

try:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
except ImportError as error:  # pragma: no cover - exercised only without matplotlib
    raise ImportError("lrsmc.report needs matplotlib: pip install 'lrsmc[plot]'") from error

from . import plot


def _save(figure, folder: Path, name: str) -> str:
    figure.tight_layout()
    figure.savefig(folder / name, dpi=100)
    plt.close(figure)
    return name


def report(
    fitted,
    observations,
    out_dir: Union[str, "os.PathLike[str]"],
    *,
    layout: Optional[str] = None,
    inputs=None,
    bin_seconds: Optional[float] = None,
    particles: int = 1000,
    repeats: int = 5,
    burn_in: int = 0,
    hann_window: int = 0,
    seed: int = 0,
    device: str = "auto",
    title: str = "lrsmc: judging a fit",
) -> Path:
    """Writes ``out_dir/index.html`` and its figures (PNG) for ``fitted`` (a fitted
    :class:`LowRankRNN` or a :class:`Model`) on the recording ``observations``, and returns the
    page's path. The measures are :func:`lrsmc.evaluate`'s with ``particles``, ``repeats``,
    ``burn_in`` and ``hann_window``; the figures compare the recording with data generated from
    smoothing-posterior starts, as the measures do. ``bin_seconds`` labels time in seconds
    (rates in spikes/s, frequencies in Hz); without it time is in steps."""
    model = fitted.model_ if hasattr(fitted, "model_") else fitted
    history = getattr(fitted, "history_", None)
    if not isinstance(model, _core.Model):
        raise TypeError(f"report: expected a fitted LowRankRNN or a Model; got {type(fitted).__name__}")
    data = _api.as_dataset(observations, layout, inputs)
    _api._check_data(data, model)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    counts = model.config.observation == "poisson"

    evaluation = _api.evaluate(model, data, particles=particles, repeats=repeats, burn_in=burn_in,
                               hann_window=hann_window, bin_seconds=bin_seconds or 1.0, seed=seed,
                               device=device)
    smoothed = _api.smooth(model, data, particles=particles, trajectories=20, seed=seed, device=device)
    recorded = np.asarray(data.observations)
    trials, steps = data.num_trials, data.num_steps
    generation_inputs = None
    if data.num_inputs:
        generation_inputs = np.concatenate(
            [np.zeros((trials, burn_in, data.num_inputs)), np.asarray(data.inputs)], axis=1)
    generated = _api.sample(model, trials, steps, burn_in=burn_in, inputs=generation_inputs,
                            initial_states=np.asarray(smoothed.trajectories)[:, 0, 0, :], seed=seed + 1,
                            device=device).observations

    figures = []  # (file, caption)
    if counts:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
        plot.raster(recorded, generated, bin_seconds=bin_seconds, axes=axes)
        figures.append((_save(figure, folder, "raster.png"), "Spike counts of trial 0, recorded and generated."))
        axes = plot.psth(recorded, generated, bin_seconds=bin_seconds)
        figures.append((_save(axes[0].figure, folder, "psth.png"),
                        "Trial-averaged rates of the first neurons, recorded and generated."))
    else:
        axes = plot.samples(recorded, generated)
        figures.append((_save(axes[0, 0].figure, folder, "traces.png"),
                        "The first channels of trial 0, recorded and generated."))
    axes = plot.power_spectra(recorded, generated, bin_seconds=bin_seconds)
    figures.append((_save(axes[0].figure, folder, "spectra.png"),
                    "Normalised, smoothed power spectra (what D_H compares), trials concatenated."))
    axes = plot.smoothed_latents(smoothed, bin_seconds=bin_seconds)
    figures.append((_save(axes[0].figure, folder, "smoothed_latents.png"),
                    "Smoothed latents of trial 0: the mean of 20 backward-simulation trajectories and "
                    "their 90 % band."))
    if model.config.rank >= 2:
        ax = plot.latents(np.asarray(smoothed.latents), title="smoothed latents in state space")
        figures.append((_save(ax.figure, folder, "state_space.png"),
                        "Smoothed latent trajectories of the first trials in the plane of z1 and z2."))
        if model.config.nonlinearity in ("relu", "clipped_relu"):
            try:
                ax = plot.fixed_points(model, latents=np.asarray(smoothed.latents))
                figures.append((_save(ax.figure, folder, "fixed_points.png"),
                                "Fixed points of the latent map with their stability, over smoothed latents."))
            except _core.Error as error:  # e.g. an arrangement too large to sweep
                figures.append((None, f"Fixed points not drawn: {error}"))
    if history is not None and len(history.get("epoch", [])):
        ax = plot.elbo(history)
        figures.append((_save(ax.figure, folder, "training.png"), "ELBO per time step during training."))

    rows = []
    for name, m in evaluation.metrics.items():
        rows.append(
            "<tr><td><code>{}</code></td><td>{:.5g}</td><td>{:.3g}</td><td>{:.5g}</td><td>{}</td><td>{}</td></tr>".format(
                html.escape(name), m["median"], m["mad"], m["baseline_median"], html.escape(m["baseline"]),
                html.escape(m["description"]))
        )
    images = []
    for file, caption in figures:
        if file is None:
            images.append(f"<p>{html.escape(caption)}</p>")
        else:
            images.append(f'<figure><img src="{file}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;}}table{{border-collapse:collapse;}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;}}img{{max-width:100%;}}
figure{{margin:1.5em 0;}}figcaption{{color:#555;}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Recording: {html.escape(data.describe())}. Model: rank {model.config.rank},
{model.config.num_hidden} {html.escape(model.config.nonlinearity)} units, {html.escape(model.config.observation)}
read-out. ELBO {evaluation.elbo:.6f} per time step ({particles} particles).</p>
<h2>Measures</h2>
<p>Median and median absolute deviation over {repeats} data sets generated from smoothing-posterior
starts{f" after {burn_in} burn-in steps" if burn_in else ""}, each beside a baseline (lrsmc evaluate).</p>
<table><tr><th>measure</th><th>median</th><th>MAD</th><th>baseline</th><th>baseline is</th><th>what it is</th></tr>
{chr(10).join(rows)}
</table>
<h2>Figures</h2>
{chr(10).join(images)}
</body></html>
"""
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
