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
