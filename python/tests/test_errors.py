"""Bad input raises the engine's error types with the engine's messages, and leaves the estimator
usable."""

import numpy as np
import pytest

import lrsmc

from conftest import small_estimator


def test_wrong_rank_of_data_names_the_shape_and_layout(fitted):
    with pytest.raises(lrsmc.InvalidInputError, match=r"X: array has 1 dimension\(s\), shape \(5,\); "
                       r"expected 3 for layout \(trials,time,channels\)") as caught:
        fitted.filter(np.zeros(5))
    assert isinstance(caught.value, ValueError)


def test_nan_is_reported_with_its_position(demo, fitted):
    x = demo.observations.copy()
    x[1, 2, 3] = np.nan
    with pytest.raises(lrsmc.InvalidInputError, match="value at trial 1, step 2, channel 3 is NaN"):
        fitted.filter(x)
    with pytest.raises(lrsmc.InvalidInputError, match="is inf"):
        small_estimator().fit(np.where(np.isnan(x), np.inf, x))


def test_rank_zero_is_out_of_range(demo):
    with pytest.raises(lrsmc.InvalidInputError, match="rank is out of range; got 0"):
        small_estimator(rank=0).fit(demo.observations)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("nonlinearity", "sigmoid", "nonlinearity is not recognised; got 'sigmoid'"),
        ("observation", "binomial", "observation is not recognised"),
        ("optimizer", "sgd", "optimizer is not recognised; got 'sgd'"),
        ("proposal", "smc", "proposal is not recognised; got 'smc'"),
        ("learning_rate", -1.0, "learning rate must lie in"),
        ("epochs", 0, "epochs is out of range; got 0"),
        ("particles", 0, "particle"),
        ("device", "tpu", "device is not recognised; got 'tpu'"),
        ("precision", "half", "precision is not recognised; got 'half'"),
    ],
)
def test_bad_options_are_invalid_input(demo, option, value, message):
    with pytest.raises(lrsmc.InvalidInputError, match=message):
        small_estimator(**{option: value}).fit(demo.observations)


def test_channel_mismatch_in_filter(fitted, demo):
    with pytest.raises(
        lrsmc.InvalidInputError,
        match=r"channel count does not match the model; got 19 \(layout trials,time,channels\), expected 20",
    ):
        fitted.filter(demo.observations[:, :, :19])


def test_wrong_layout_names_the_one_that_fits(fitted, demo):
    swapped = np.ascontiguousarray(demo.observations[:, :20].transpose(0, 2, 1))  # (trials, 20, 20)
    swapped = np.concatenate([swapped, swapped[:, :5]], axis=1)  # (trials, 25 time, 20 channels)
    with pytest.raises(
        lrsmc.InvalidInputError,
        match=r"got 25 \(layout trials,channels,time\), expected 20; --layout trials,time,channels reads 20",
    ):
        fitted.filter(swapped, layout="trials,channels,time")


def test_counts_with_a_gaussian_read_out_are_announced(fitted):
    counts = np.tile(np.arange(4.0), 3 * 30 * 5).reshape(3, 30, 20)
    with pytest.warns(UserWarning, match="every value is a non-negative integer, as spike counts are"):
        fitted.filter(counts, particles=8)


def test_poisson_needs_counts():
    with pytest.raises(lrsmc.InvalidInputError, match="Poisson observations must be non-negative counts"):
        lrsmc.LowRankRNN(rank=1, num_hidden=4, observation="poisson", epochs=1).fit(np.full((3, 10, 2), 0.5))


def test_window_longer_than_recording(demo):
    with pytest.raises(lrsmc.InvalidInputError, match="window"):
        small_estimator(window=500).fit(demo.observations[0])  # one recording of 50 steps


def test_inputs_must_match_the_data(demo):
    inputs = np.zeros((40, 49, 1))
    with pytest.raises(lrsmc.InvalidInputError, match="inputs do not match the data"):
        small_estimator().fit(demo.observations, inputs=inputs)


@pytest.mark.skipif(lrsmc.cuda_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_clear_error(demo):
    rnn = small_estimator(device="cuda")
    with pytest.raises(lrsmc.CudaError, match="device 'cuda' is not available"):
        rnn.fit(demo.observations)
    with pytest.raises(lrsmc.CudaError):
        lrsmc.filter(demo.teacher, demo.observations, device="cuda")


def test_unfitted_estimator():
    with pytest.raises(lrsmc.NotFittedError, match="call fit"):
        lrsmc.LowRankRNN().sample()


def test_estimator_stays_usable_after_an_error(fitted, demo):
    with pytest.raises(lrsmc.InvalidInputError):
        fitted.filter(demo.observations[..., :3])
    assert np.isfinite(fitted.score(demo.observations, particles=20))


def test_sample_inputs_shape_is_checked(demo):
    config = lrsmc.ModelConfig(rank=2, num_hidden=8, num_channels=3, num_inputs=2)
    model = lrsmc.Model.initialise(config, seed=1)
    with pytest.raises(lrsmc.InvalidInputError, match=r"expected \(4, 10, 2\)"):
        lrsmc.sample(model, 4, 10, inputs=np.zeros((4, 10, 3)))
    drawn = lrsmc.sample(model, 4, 10, inputs=np.ones((4, 10, 2)), seed=3)
    assert drawn.observations.shape == (4, 10, 3)


@pytest.mark.parametrize(
    "values, dtype",
    [
        (np.zeros((2, 5, 3), dtype=np.complex128), "complex128"),
        (np.full((2, 5, 3), "a"), "<U1"),
        (np.zeros((2, 5, 3), dtype="datetime64[s]"), "datetime64"),
    ],
)
def test_arrays_that_are_not_real_numbers_are_refused(values, dtype):
    with pytest.raises(lrsmc.InvalidInputError, match=f"X: array has dtype {dtype}"):
        lrsmc.as_dataset(values)
    with pytest.raises(lrsmc.InvalidInputError, match="expected real numbers"):
        small_estimator().fit(values)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("seed", -1, "seed is out of range; got -1"),
        ("seed", 2**64, "seed is out of range"),
        ("seed", 1.5, "seed must be an integer"),
        ("epochs", 2**31, "epochs is out of range; got 2147483648"),
        ("particles", "10", "particles must be an integer"),
    ],
)
def test_integers_out_of_range_are_invalid_input_not_type_errors(demo, option, value, message):
    with pytest.raises(lrsmc.InvalidInputError, match=message):
        small_estimator(**{option: value}).fit(demo.observations)



def test_sampling_arguments_are_checked(fitted):
    with pytest.raises(lrsmc.InvalidInputError, match="seed is out of range; got -1"):
        lrsmc.simulate(fitted.model_, 1, 5, seed=-1)
    with pytest.raises(lrsmc.InvalidInputError, match="trials is out of range; got 0"):
        lrsmc.sample(fitted.model_, 0, 5)
