"""Python gives the command line's numbers for the same data and seed. Runs the CMake-built `lrsmc`
binary named by LRSMC_CLI (scripts/test.sh sets it) on the same .npy files and compares: fitted
parameters bit for bit, the training history, filtered ELBO and latents, samples, simulations and
fixed points. The CLI stores latents and samples as float32, so those compare after rounding
Python's float64 to float32 (exactly)."""

import json
import os
import subprocess

import numpy as np
import pytest

import lrsmc

from conftest import assert_models_equal

CLI = os.environ.get("LRSMC_CLI", "")
pytestmark = pytest.mark.skipif(
    not CLI, reason="LRSMC_CLI is not set: point it at the CMake-built lrsmc binary (scripts/test.sh does)"
)


def run(*arguments, cwd, allowed_status=(0,)):
    completed = subprocess.run([CLI, *map(str, arguments)], cwd=cwd, capture_output=True, text=True)
    assert completed.returncode in allowed_status, (
        f"lrsmc {' '.join(map(str, arguments))} failed:\n{completed.stderr}"
    )
    return completed


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, demo):
    folder = tmp_path_factory.mktemp("cli")
    np.save(folder / "data.npy", demo.observations)  # float64: the CLI reads the same values
    return folder


FIT_OPTIONS = dict(rank=2, num_hidden=12, nonlinearity="relu", epochs=3, batch_size=8, particles=8,
                   learning_rate=1e-2, learning_rate_end=1e-3, optimizer="adam", held_out=0.2,
                   eval_every=2, seed=5)
FIT_FLAGS = ["--rank", 2, "--hidden", 12, "--nonlinearity", "relu", "--epochs", 3, "--batch-size", 8,
             "--particles", 8, "--lr", 1e-2, "--lr-end", 1e-3, "--optimizer", "adam", "--held-out", 0.2,
             "--eval-every", 2, "--seed", 5, "-q"]


@pytest.fixture(scope="module")
def fitted_pair(workspace, demo):
    run("fit", "--data", "data.npy", *FIT_FLAGS, "--out", "cli_model.npz", "--checkpoint-every", 3,
        cwd=workspace)
    python = lrsmc.LowRankRNN(**FIT_OPTIONS).fit(demo.observations)
    return lrsmc.load_model(workspace / "cli_model.npz"), python


def test_fit_gives_the_same_parameters(fitted_pair):
    cli_model, python = fitted_pair
    assert_models_equal(cli_model, python.model_)


def test_fit_gives_the_same_history(workspace, fitted_pair):
    _, python = fitted_pair
    checkpoint = np.load(workspace / "cli_model.npz.checkpoint.npz")
    history = json.loads(str(checkpoint["checkpoint_training"]))["history"]
    np.testing.assert_array_equal([row[1] for row in history], python.history_["train_elbo"])
    held = [np.nan if row[2] is None else row[2] for row in history]
    np.testing.assert_array_equal(held, python.history_["held_out_elbo"])


def test_long_recording_fit_is_the_same(workspace, demo):
    recording = demo.observations.reshape(-1, 20)
    np.save(workspace / "recording.npy", np.ascontiguousarray(recording.T))  # channels × time
    run("fit", "--data", "recording.npy", "--layout", "channels,time", "--rank", 2, "--hidden", 6,
        "--nonlinearity", "clipped_relu", "--epochs", 2, "--window", 30, "--windows-per-epoch", 16,
        "--particles", 4, "--held-out", 0.1, "--seed", 8, "-q", "--out", "recording_model.npz", cwd=workspace)
    python = lrsmc.LowRankRNN(rank=2, num_hidden=6, epochs=2, window=30, windows_per_epoch=16, particles=4,
                              held_out=0.1, seed=8).fit(recording.T, layout="channels,time")
    assert_models_equal(lrsmc.load_model(workspace / "recording_model.npz"), python.model_)


def test_filter_is_the_same(workspace, fitted_pair, demo):
    _, python = fitted_pair
    run("filter", "--model", "cli_model.npz", "--data", "data.npy", "--particles", 50, "--seed", 9,
        "--device", "cpu", "--out-latents", "latents.npy", "--out-elbo", "elbo.npy",
        "--out-particles", "particles.npz", cwd=workspace)
    result = lrsmc.filter(python.model_, demo.observations, particles=50, seed=9, device="cpu",
                          return_particles=True)
    np.testing.assert_array_equal(np.load(workspace / "elbo.npy"), result.elbo_per_trial)
    np.testing.assert_array_equal(np.load(workspace / "latents.npy"), result.latents.astype(np.float32))
    stored = np.load(workspace / "particles.npz")
    np.testing.assert_array_equal(stored["ancestors"], result.ancestors)
    np.testing.assert_array_equal(stored["particles"], result.particles.astype(np.float32))
    np.testing.assert_array_equal(stored["resampled"].astype(bool), result.resampled)


@pytest.mark.parametrize("precision", ["float64", "float32-device"])
def test_filter_is_the_same_in_every_precision(workspace, fitted_pair, demo, precision):
    _, python = fitted_pair
    run("filter", "--model", "cli_model.npz", "--data", "data.npy", "--particles", 20, "--seed", 3,
        "--device", "cpu", "--precision", precision, "--out-latents", f"latents_{precision}.npy",
        "--out-elbo", f"elbo_{precision}.npy", cwd=workspace)
    result = lrsmc.filter(python.model_, demo.observations, particles=20, seed=3, device="cpu",
                          precision=precision)
    np.testing.assert_array_equal(np.load(workspace / f"elbo_{precision}.npy"), result.elbo_per_trial)
    # The option reaches the engine: the default packed engine rounds otherwise (how closely
    # the engines agree is tests/test_packed_engine.cpp's subject).
    default = lrsmc.filter(python.model_, demo.observations, particles=20, seed=3, device="cpu")
    assert not np.array_equal(default.elbo_per_trial, result.elbo_per_trial)


def test_sample_is_the_same(workspace, fitted_pair):
    _, python = fitted_pair
    run("sample", "--model", "cli_model.npz", "--trials", 4, "--steps", 30, "--burn-in", 10,
        "--seed", 11, "--out", "samples.npz", cwd=workspace)
    drawn = python.sample(trials=4, steps=30, burn_in=10, seed=11)
    stored = np.load(workspace / "samples.npz")
    for name in ("observations", "rates", "latents"):
        np.testing.assert_array_equal(stored[name], getattr(drawn, name).astype(np.float32), err_msg=name)


def test_simulate_is_the_same(workspace, demo):
    demo.teacher.save(str(workspace / "teacher.npz"))
    run("simulate", "--model", "teacher.npz", "--trials", 3, "--steps", 20, "--seed", 2,
        "--out", "simulated.npz", cwd=workspace)
    simulated = lrsmc.simulate(demo.teacher, trials=3, steps=20, seed=2)
    stored = np.load(workspace / "simulated.npz")
    for name in ("observations", "rates", "latents"):
        np.testing.assert_array_equal(stored[name], getattr(simulated, name).astype(np.float32), err_msg=name)


def test_demo_data_are_the_demo_commands(workspace):
    # One epoch leaves the student far from the teacher: the demo then exits 1 ("NOT within 2%").
    run("demo", "--epochs", 1, "--hidden", 4, "--particles", 2, "--eval-particles", 4, "--device", "cpu",
        "-q", "--out-dir", "demo_out", cwd=workspace, allowed_status=(0, 1))
    stored = np.load(workspace / "demo_out" / "data.npz")
    data = lrsmc.demo_data()
    np.testing.assert_array_equal(stored["observations"], data.observations.astype(np.float32))
    np.testing.assert_array_equal(stored["latents"], data.latents.astype(np.float32))


@pytest.mark.parametrize("nonlinearity, numerical", [("relu", 0), ("clipped_relu", 0), ("tanh", 40)])
def test_fixed_points_are_the_same(workspace, nonlinearity, numerical):
    config = lrsmc.ModelConfig(rank=2, num_hidden=14, num_channels=3, nonlinearity=nonlinearity)
    model = lrsmc.Model.initialise(config, seed=6)
    model.set("n", model.get("n") * 4)  # strong enough recurrence for several fixed points
    model.save(str(workspace / f"{nonlinearity}.npz"))
    flags = ["--numerical", numerical, "--seed", 3] if numerical else []
    run("fixed-points", f"{nonlinearity}.npz", *flags, "--out-json", f"{nonlinearity}.json",
        "--out-npy", f"{nonlinearity}_points.npy", cwd=workspace)
    points = lrsmc.fixed_points(model, method="numerical" if numerical else "exact", num_starts=numerical or 100, seed=3)
    stored = json.loads((workspace / f"{nonlinearity}.json").read_text())["fixed_points"]
    assert len(stored) == len(points) >= 1
    np.testing.assert_array_equal(np.load(workspace / f"{nonlinearity}_points.npy").reshape(-1, 2),
                                  np.array([p.z for p in points]))
    assert [entry["stability"] for entry in stored] == [p.stability for p in points]
    assert [entry["pattern"] for entry in stored] == [list(p.pattern) for p in points]


def test_fit_with_inputs_is_the_same(workspace, demo):
    inputs = np.sin(np.linspace(0, 6, 40 * 50)).reshape(40, 50, 1) * np.arange(1, 41).reshape(40, 1, 1) / 40
    np.save(workspace / "inputs.npy", inputs)
    run("fit", "--data", "data.npy", "--inputs", "inputs.npy", "--rank", 2, "--hidden", 6, "--epochs", 2,
        "--particles", 4, "--seed", 12, "-q", "--out", "inputs_model.npz", cwd=workspace)
    python = lrsmc.LowRankRNN(rank=2, num_hidden=6, epochs=2, particles=4, seed=12)
    python.fit(demo.observations, inputs=inputs)
    cli_model = lrsmc.load_model(workspace / "inputs_model.npz")
    assert cli_model.config.num_inputs == 1
    assert_models_equal(cli_model, python.model_)
    run("fixed-points", "inputs_model.npz", "--input", 0.5, "--out-json", "inputs_points.json",
        "--out-npy", "inputs_points.npy", cwd=workspace)
    points = python.fixed_points(input=[0.5])
    np.testing.assert_array_equal(np.load(workspace / "inputs_points.npy").reshape(-1, 2),
                                  np.array([p.z for p in points]).reshape(-1, 2))


def test_poisson_fit_is_the_same(workspace):
    counts = np.random.default_rng(7).poisson(1.5, size=(12, 30, 5)).astype(np.float64)
    np.save(workspace / "counts.npy", counts)
    run("fit", "--data", "counts.npy", "--observation", "poisson", "--rank", 1, "--hidden", 5,
        "--epochs", 2, "--particles", 6, "--seed", 3, "-q", "--out", "poisson_model.npz", cwd=workspace)
    python = lrsmc.LowRankRNN(rank=1, num_hidden=5, observation="poisson", epochs=2, particles=6, seed=3)
    python.fit(counts.astype(np.int64))  # integer counts convert to the same float64 values
    assert_models_equal(lrsmc.load_model(workspace / "poisson_model.npz"), python.model_)
    # Drawn counts are integers on both sides: int32 in the file, int64 in Python.
    run("sample", "--model", "poisson_model.npz", "--trials", 3, "--steps", 20, "--seed", 4,
        "--out", "poisson_samples.npz", cwd=workspace)
    stored = np.load(workspace / "poisson_samples.npz")["observations"]
    drawn = python.sample(trials=3, steps=20, seed=4).observations
    assert stored.dtype == np.int32 and drawn.dtype == np.int64
    np.testing.assert_array_equal(stored, drawn)
    assert drawn.sum() > 0


def test_preset_fit_is_the_same(workspace, demo):
    # The preset's options, with the ones given explicitly winning on both sides.
    run("fit", "--data", "data.npy", "--preset", "small", "--epochs", 3, "--hidden", 8, "--seed", 4,
        "-q", "--out", "preset_model.npz", cwd=workspace)
    python = lrsmc.LowRankRNN(preset="small", epochs=3, num_hidden=8, seed=4, verbose=False)
    python.fit(demo.observations)
    cli_model = lrsmc.load_model(workspace / "preset_model.npz")
    assert (cli_model.config.rank, cli_model.config.num_hidden, cli_model.config.nonlinearity) == (2, 8, "relu")
    assert_models_equal(cli_model, python.model_)
