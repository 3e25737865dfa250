"""The plotting functions draw what they say, and the example script writes its figures."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lrsmc  # noqa: E402
import lrsmc.plot  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fit_demo.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_elbo_curve(fitted):
    ax = lrsmc.plot.elbo(fitted)
    (line,) = ax.get_lines()
    np.testing.assert_array_equal(line.get_ydata(), fitted.history_["train_elbo"])
    assert ax.get_ylabel() == "ELBO per time step"
    plt.close(ax.figure)


def test_latent_trajectories(fitted, demo):
    latents = fitted.transform(demo.observations)
    ax = lrsmc.plot.latents(latents, trials=3)
    assert len(ax.get_lines()) == 6  # a path and a start marker per trial
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), latents[0, :, 0])
    plt.close(ax.figure)


def test_data_against_samples(fitted, demo):
    generated = fitted.sample(trials=2, steps=50, seed=1).observations
    axes = lrsmc.plot.samples(demo.observations, generated, channels=[0, 5])
    assert axes.shape == (2, 2)
    np.testing.assert_array_equal(axes[1, 0].get_lines()[0].get_ydata(), demo.observations[0, :, 5])
    np.testing.assert_array_equal(axes[1, 1].get_lines()[0].get_ydata(), generated[0, :, 5])
    plt.close(axes[0, 0].figure)


def test_fixed_points_in_the_latent_plane(demo):
    ax = lrsmc.plot.fixed_points(demo.teacher, latents=demo.latents[:2])
    markers = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(markers) == 1 and markers[0].get_label() == "unstable spiral"
    assert len(ax.collections) == 1  # the flow field
    plt.close(ax.figure)


def test_example_script_writes_its_figures(tmp_path):
    out = tmp_path / "figures"
    environment = dict(os.environ, MPLBACKEND="Agg")
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), "--epochs", "3", "--trials", "30", "--steps", "40", "--quiet"],
        capture_output=True, text=True, env=environment, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    for name in ("elbo.png", "latents.png", "samples.png", "fixed_points.png"):
        path = out / name
        assert path.stat().st_size > 10_000, name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert (out / "summary.json").exists()


def test_report_writes_a_page_whose_images_exist(tmp_path, demo):
    """lrsmc.report on the demo's teacher: every image the page references exists and is a PNG, and
    the measures' table names each measure."""
    import re

    page = lrsmc.report(demo.teacher, demo.observations[:6], tmp_path / "report", particles=100, repeats=2,
                        bin_seconds=0.01, device="cpu")
    text = page.read_text()
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert {"traces.png", "spectra.png", "smoothed_latents.png", "state_space.png"} <= set(sources)
    for source in sources:
        image = page.parent / source
        assert image.stat().st_size > 1000, source
        assert image.read_bytes()[:8] == PNG_SIGNATURE, source
    for name in ("d_stsp", "d_h", "mean_rate_error"):
        assert f"<code>{name}</code>" in text
    assert "time (s)" not in text  # labels are in the images, not the page


def test_count_figures_label_time_in_seconds(demo):
    counts = np.random.default_rng(1).poisson(1.0, size=(3, 40, 5)).astype(float)
    axes = lrsmc.plot.raster(counts, counts[::-1], bin_seconds=0.02)
    assert axes[0].get_xlabel() == "time (s)" and axes[0].get_ylabel() == "neuron"
    plt.close(axes[0].figure)
    axes = lrsmc.plot.psth(counts, counts, neurons=2, bin_seconds=0.02)
    (recorded, _) = axes[0].get_lines()
    np.testing.assert_allclose(recorded.get_ydata(), counts[:, :, 0].mean(0) / 0.02)
    assert axes[0].get_ylabel() == "spikes / s"
    plt.close(axes[0].figure)
    axes = lrsmc.plot.power_spectra(counts, counts, channels=1, bin_seconds=0.02)
    assert axes[0].get_xlabel() == "frequency (Hz)"
    (line, _) = axes[0].get_lines()
    assert line.get_xdata()[-1] == pytest.approx(25.0)  # Nyquist of 50 Hz bins
    plt.close(axes[0].figure)
