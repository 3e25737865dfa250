"""Model files: saving and loading (the command line's .npz format), numpy import, estimators."""

import json

import numpy as np
import pytest

import lrsmc

from conftest import assert_models_equal


def test_save_load_round_trip(tmp_path, random_model):
    path = tmp_path / "model.npz"
    lrsmc.save_model(random_model, path)
    assert_models_equal(random_model, lrsmc.load_model(path))


def test_numpy_reads_and_writes_model_files(tmp_path, random_model):
    path = tmp_path / "model.npz"
    random_model.save(str(path))
    archive = np.load(path)
    config = json.loads(str(archive["config"]))
    assert config["format"] == "lrsmc-model" and config["rank"] == 2 and config["hidden"] == 10
    np.testing.assert_array_equal(archive["m"], random_model.get("m"))
    # Import: a model written by numpy alone, with one parameter changed.
    entries = {name: archive[name] for name in archive.files if name != "config"}
    entries["h"] = np.linspace(-1, 1, 10)
    imported = tmp_path / "imported.npz"
    np.savez(imported, config=json.dumps(config), **entries)
    model = lrsmc.load_model(imported)
    np.testing.assert_array_equal(model.get("h"), entries["h"])
    np.testing.assert_array_equal(model.get("n"), random_model.get("n"))


def test_estimator_save_and_load_give_the_same_filter(tmp_path, fitted, demo):
    path = tmp_path / "fitted.npz"
    fitted.save(path)
    loaded = lrsmc.LowRankRNN.load(path, particles=8)
    assert loaded.rank == 2 and loaded.num_hidden == 12 and loaded.nonlinearity == "relu"
    assert_models_equal(fitted.model_, loaded.model_)
    first = fitted.filter(demo.observations, particles=30, seed=5)
    second = loaded.filter(demo.observations, particles=30, seed=5)
    np.testing.assert_array_equal(first.elbo_per_trial, second.elbo_per_trial)
    np.testing.assert_array_equal(first.latents, second.latents)


def test_missing_file_is_an_io_error(tmp_path):
    with pytest.raises(lrsmc.IoError, match="missing.npz") as caught:
        lrsmc.load_model(tmp_path / "missing.npz")
    assert isinstance(caught.value, OSError)


def test_corrupt_file_is_reported_with_its_name(tmp_path):
    path = tmp_path / "corrupt.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(lrsmc.Error, match="corrupt.npz"):
        lrsmc.load_model(path)


def test_wrong_entry_shape_is_invalid_input(tmp_path, random_model):
    path = tmp_path / "model.npz"
    random_model.save(str(path))
    archive = np.load(path)
    entries = {name: archive[name] for name in archive.files}
    entries["m"] = np.zeros((10, 3))
    broken = tmp_path / "broken.npz"
    np.savez(broken, **entries)
    with pytest.raises(lrsmc.InvalidInputError, match="'m' has the wrong shape"):
        lrsmc.load_model(broken)


def test_saving_into_a_missing_folder_is_an_io_error(tmp_path, random_model):
    with pytest.raises(lrsmc.IoError):
        lrsmc.save_model(random_model, tmp_path / "no" / "such" / "folder" / "model.npz")


def test_get_and_set_parameter_blocks(random_model):
    shapes = random_model.parameter_shapes
    assert shapes["m"] == (10, 2) and shapes["n"] == (2, 10) and shapes["h"] == (10,)
    random_model.set("h", np.arange(10.0))
    np.testing.assert_array_equal(random_model.get("h"), np.arange(10.0))
    with pytest.raises(lrsmc.InvalidInputError, match="'m' has the wrong shape; got \\(2, 10\\)"):
        random_model.set("m", np.zeros((2, 10)))
    with pytest.raises(lrsmc.InvalidInputError, match="w_u"):
        random_model.get("w_u")  # no inputs, so no input weights


def test_load_data_reads_files_as_the_command_line(tmp_path, demo):
    x = demo.observations
    np.save(tmp_path / "data.npy", x.astype(np.float32))
    data = lrsmc.load_data(tmp_path / "data.npy")
    np.testing.assert_array_equal(data.observations, x.astype(np.float32).astype(np.float64))
    np.savez(tmp_path / "both.npz", spikes=np.asfortranarray(x[0].T), other=np.zeros(3))
    recording = lrsmc.load_data(tmp_path / "both.npz", layout="channels,time", field="spikes")
    assert recording.continuous and recording.num_steps == 50
    np.testing.assert_array_equal(recording.observations[0], x[0])
    with pytest.raises(lrsmc.InvalidInputError, match="cannot tell which entry holds the data"):
        lrsmc.load_data(tmp_path / "both.npz")
    with pytest.raises(lrsmc.IoError, match="absent.npy"):
        lrsmc.load_data(tmp_path / "absent.npy")
