"""The package imports, its exception classes, and arrays crossing the boundary without copies."""

import numpy as np
import pytest

import lrsmc


def test_import_exposes_version_and_devices():
    assert lrsmc.__version__ == "0.1.0"
    assert isinstance(lrsmc.built_with_cuda, bool)
    assert isinstance(lrsmc.cuda_available(), bool)
    if not lrsmc.built_with_cuda:
        assert lrsmc.cuda_available() is False


@pytest.mark.parametrize(
    "error_class, python_base",
    [
        (lrsmc.InvalidInputError, ValueError),
        (lrsmc.IoError, OSError),
        (lrsmc.OutOfMemoryError, MemoryError),
        (lrsmc.NumericalError, ArithmeticError),
        (lrsmc.CudaError, RuntimeError),
    ],
)
def test_exception_hierarchy(error_class, python_base):
    assert issubclass(error_class, lrsmc.Error)
    assert issubclass(error_class, python_base)
    assert issubclass(lrsmc.Error, RuntimeError)
    assert error_class.__module__ == "lrsmc"


def test_filter_outputs_own_the_engines_buffers(fitted, demo):
    result = fitted.filter(demo.observations, particles=20, return_particles=True)
    for array in (result.elbo_per_trial, result.latents, result.particles, result.log_weights):
        assert array.dtype == np.float64
        assert array.flags.c_contiguous and array.flags.writeable
        # Not a copy: the base is the capsule that owns the engine's std::vector.
        assert type(array.base).__name__ == "PyCapsule"
    assert result.ancestors.dtype == np.int32
    assert result.resampled.dtype == bool
    assert result.particles.shape == (40, 50, 20, 2)
    assert result.latents.shape == (40, 50, 2)


def test_parameters_are_a_writable_view(random_model):
    parameters = random_model.parameters
    offset = 0  # 'm' is the first block
    parameters[offset] = 0.25
    assert random_model.get("m")[0, 0] == 0.25
    assert parameters.size == sum(int(np.prod(shape)) for shape in random_model.parameter_shapes.values())


def test_dataset_layouts_agree(demo):
    x = demo.observations
    reference = lrsmc.as_dataset(x)
    channels_first = lrsmc.as_dataset(np.transpose(x, (0, 2, 1)), layout="trials,channels,time")
    np.testing.assert_array_equal(reference.observations, channels_first.observations)
    recording = lrsmc.as_dataset(np.ascontiguousarray(x[0].T), layout="channels,time")
    assert recording.continuous and recording.num_trials == 1
    np.testing.assert_array_equal(recording.observations[0], x[0])
    assert not reference.observations.flags.writeable


def test_integer_and_float32_data_are_accepted():
    counts = np.random.default_rng(0).poisson(2.0, size=(5, 30, 4)).astype(np.int32)
    rnn = lrsmc.LowRankRNN(rank=1, num_hidden=6, observation="poisson", epochs=1, particles=4)
    rnn.fit(counts)
    assert rnn.model_.config.link == "softplus"  # link='auto' for Poisson read-outs
    assert np.isfinite(rnn.score(counts.astype(np.float32), particles=16))


def test_estimator_defaults_are_the_engines():
    """LowRankRNN's defaults are the command line's (the paper's EEG setting)."""
    assert lrsmc.LowRankRNN().model_config(64).to_json() == lrsmc.ModelConfig().to_json()
    config = lrsmc.LowRankRNN(observation="poisson").model_config(5)
    assert (config.observation, config.link, config.num_channels) == ("poisson", "softplus", 5)
