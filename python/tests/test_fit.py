"""Training from Python: the ELBO improves, the progress callback sees every epoch and can stop
training, Ctrl-C stops cleanly and keeps the model, and a resumed run equals an uninterrupted one."""

import os
import signal
import threading
import warnings

import numpy as np
import pytest

import lrsmc

from conftest import assert_models_equal, small_estimator


def test_fit_improves_the_elbo(fitted, demo):
    curve = fitted.history_["train_elbo"]
    assert fitted.completed_ and fitted.stop_reason_ == ""
    assert list(fitted.history_["epoch"]) == [1, 2, 3, 4, 5]
    assert curve[-1] > curve[0] + 1.0
    start = lrsmc.Model.initialise(small_estimator().model_config(20), seed=4)
    before = lrsmc.filter(start, demo.observations, particles=64, seed=2).elbo
    after = fitted.score(demo.observations, particles=64)
    assert after > before


def test_held_out_elbo_is_recorded(demo):
    rnn = small_estimator(epochs=4, held_out=0.25, eval_every=2).fit(demo.observations)
    held = rnn.history_["held_out_elbo"]
    assert np.isnan(held[0]) and np.isfinite(held[1]) and np.isnan(held[2]) and np.isfinite(held[3])


def test_long_recording_trains_on_windows(demo):
    recording = demo.observations.reshape(-1, 20)  # 2000 steps × 20 channels
    rnn = small_estimator(epochs=2, window=25, windows_per_epoch=20).fit(recording)
    assert rnn.completed_ and len(rnn.history_["epoch"]) == 2


def test_callback_sees_every_epoch(demo):
    reports = []
    small_estimator(epochs=3).fit(demo.observations, callback=reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert all(r.epochs == 3 and np.isfinite(r.train_elbo) for r in reports)
    assert reports[0].learning_rate == pytest.approx(2e-2)


def test_callback_returning_false_stops_training(demo):
    rnn = small_estimator(epochs=50).fit(demo.observations, callback=lambda report: report.epoch < 2)
    assert not rnn.completed_
    assert rnn.stop_reason_ == "stopped by request after epoch 2"
    assert len(rnn.history_["epoch"]) == 2
    assert np.isfinite(rnn.score(demo.observations, particles=16))


def test_exception_in_callback_propagates_and_keeps_the_model(demo):
    def fail_at_three(report):
        if report.epoch == 3:
            raise ValueError("enough")

    rnn = small_estimator(epochs=50)
    with pytest.raises(ValueError, match="enough") as caught:
        rnn.fit(demo.observations, callback=fail_at_three)
    assert len(rnn.history_["epoch"]) == 3
    assert rnn.stop_reason_ == "stopped by ValueError in the callback after epoch 3"
    assert caught.value.training_outcome.model is rnn.model_


def test_ctrl_c_stops_after_the_epoch_and_keeps_the_model(demo):
    """SIGINT arrives while the engine runs (the GIL released); the epoch's progress hook sees it
    through PyErr_CheckSignals, training stops cleanly and KeyboardInterrupt is raised."""
    # Python's own Ctrl-C handler, also where the test runner started with SIGINT ignored (a
    # background job of a non-interactive shell): then Python installs none.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))

    def progress(report):
        if report.epoch == 1:
            timer.start()  # from inside the fit, so the signal cannot arrive before it
        # Bounded: were the signal lost, training would stop at epoch 2000 and the test fail.
        return report.epoch < 2000

    rnn = small_estimator(epochs=100_000)
    try:
        with pytest.raises(KeyboardInterrupt):
            rnn.fit(demo.observations, callback=progress)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    epochs = len(rnn.history_["epoch"])
    assert 1 <= epochs < 2000
    assert rnn.stop_reason_ == f"interrupted (KeyboardInterrupt) after epoch {epochs}"
    assert not rnn.completed_
    assert np.isfinite(rnn.score(demo.observations, particles=16))


def test_resume_from_checkpoint_equals_uninterrupted_run(tmp_path, demo):
    uninterrupted = small_estimator(epochs=4).fit(demo.observations)
    checkpoint = tmp_path / "run.checkpoint.npz"
    stopped = small_estimator(epochs=4).fit(
        demo.observations, callback=lambda report: report.epoch < 2, checkpoint=checkpoint
    )
    assert len(stopped.history_["epoch"]) == 2 and checkpoint.exists()
    resumed = small_estimator(epochs=4).fit(demo.observations, checkpoint=checkpoint, resume=True)
    assert resumed.completed_
    assert list(resumed.history_["epoch"]) == [1, 2, 3, 4]
    assert_models_equal(uninterrupted.model_, resumed.model_)


def test_resume_without_checkpoint_is_invalid_input(tmp_path, demo):
    with pytest.raises(lrsmc.InvalidInputError, match="checkpoint does not exist"):
        small_estimator().fit(demo.observations, checkpoint=tmp_path / "none.npz", resume=True)


def test_warm_start_continues_from_the_fitted_model(demo):
    rnn = small_estimator(epochs=2, warm_start=True).fit(demo.observations)
    first = rnn.model_
    rnn.fit(demo.observations)
    assert rnn.model_ is not first
    assert rnn.history_["train_elbo"][0] > small_estimator(epochs=1).fit(demo.observations).history_["train_elbo"][0]


def test_get_and_set_params():
    rnn = lrsmc.LowRankRNN(rank=4)
    params = rnn.get_params()
    assert params["rank"] == 4 and params["num_hidden"] is None and params["device"] == "auto"
    assert rnn.effective_params()["num_hidden"] == 512  # the command line's default
    rnn.set_params(num_hidden=64, seed=3)
    assert rnn.num_hidden == 64 and "num_hidden=64" in repr(rnn)
    with pytest.raises(ValueError, match="no parameter 'hidden'"):
        rnn.set_params(hidden=3)


def test_sample_shapes_and_burn_in(fitted):
    drawn = fitted.sample(trials=3, steps=20, burn_in=5, seed=2)
    assert drawn.observations.shape == (3, 20, 20) and drawn.latents.shape == (3, 20, 2)
    full = fitted.sample(trials=3, steps=25, seed=2)
    np.testing.assert_array_equal(full.latents[:, 5:], drawn.latents)


def test_keep_best_and_patience_need_a_held_out_set_and_valid_values(demo):
    model = lrsmc.LowRankRNN(rank=2, num_hidden=8).model_config(20, 0)
    start = lrsmc.Model.initialise(model, 1)
    with pytest.raises(lrsmc.InvalidInputError, match="keep is not recognised; got 'middle'"):
        lrsmc.fit_model(start, demo.observations, epochs=1, held_out=0.2, keep="middle")
    with pytest.raises(lrsmc.InvalidInputError, match="patience is out of range; got -1"):
        lrsmc.fit_model(start, demo.observations, epochs=1, held_out=0.2, patience=-1)
    with pytest.raises(lrsmc.InvalidInputError, match="need a held-out set"):
        lrsmc.fit_model(start, demo.observations, epochs=1, keep="best")
    outcome = lrsmc.fit_model(start, demo.observations[:40], epochs=3, held_out=0.25, keep="best",
                              patience=5, particles=4, device="cpu")
    assert outcome.completed


def test_estimator_keeps_the_best_model_like_the_command_line(demo):
    rnn = small_estimator(epochs=6, held_out=0.25, keep="best", patience=4)
    assert rnn.get_params()["keep"] == "best" and rnn.get_params()["patience"] == 4
    rnn.fit(demo.observations[:40])
    assert rnn.completed_
    with pytest.raises(lrsmc.InvalidInputError, match="need a held-out set"):
        small_estimator(epochs=1, keep="best").fit(demo.observations[:40])


def test_preset_sets_the_parameters_left_at_their_defaults():
    small = lrsmc.LowRankRNN(preset="small").effective_params()
    assert (small["rank"], small["num_hidden"], small["nonlinearity"]) == (2, 20, "relu")
    assert (small["optimizer"], small["learning_rate"], small["learning_rate_end"]) == ("adam", 0.04, 0.0)
    assert (small["held_out"], small["keep"], small["eval_particles"]) == (0.2, "best", 64)
    given = lrsmc.LowRankRNN(preset="small", rank=3, particles=8).effective_params()
    assert (given["rank"], given["particles"], given["num_hidden"]) == (3, 8, 20)
    spikes = lrsmc.LowRankRNN(preset="spikes").effective_params()
    assert (spikes["observation"], spikes["link"], spikes["transition_noise"]) == ("poisson", "softplus", "diag")
    # get_params keeps what was given (scikit-learn's clone relies on it), and a value equal to
    # the command line's default given explicitly still wins over the preset.
    assert lrsmc.LowRankRNN(preset="small").get_params()["rank"] is None
    assert lrsmc.LowRankRNN(preset="small", rank=3).effective_params()["rank"] == 3
    plain = lrsmc.LowRankRNN().effective_params()
    assert (plain["rank"], plain["num_hidden"], plain["learning_rate_end"]) == (3, 512, 0.0)
    names = [preset["name"] for preset in lrsmc.presets()]
    assert names == ["eeg", "spikes", "small"]
    with pytest.raises(lrsmc.InvalidInputError, match="unknown preset 'tiny'; expected one of eeg, spikes, small"):
        lrsmc.LowRankRNN(preset="tiny").effective_params()


def test_short_run_at_the_papers_learning_rate_warns(demo):
    steps = -(-len(demo.observations) // 10)  # one epoch of batches of 10 trials
    with pytest.warns(UserWarning, match=f"a short run: {steps} optimizer steps at learning rate 0.001"):
        lrsmc.LowRankRNN(rank=2, num_hidden=4, epochs=1, particles=2, verbose=False).fit(demo.observations)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lrsmc.LowRankRNN(rank=2, num_hidden=4, epochs=1, particles=2, learning_rate=0.04, verbose=False).fit(
            demo.observations
        )


def test_poisson_samples_are_integers(demo):
    config = lrsmc.ModelConfig(rank=2, num_hidden=6, num_channels=4, observation="poisson", link="softplus")
    model = lrsmc.Model.initialise(config, seed=2)
    drawn = lrsmc.sample(model, trials=3, steps=40, seed=1)
    assert drawn.observations.dtype == np.int64 and drawn.rates.dtype == np.float64
    assert drawn.observations.min() >= 0 and drawn.observations.sum() > 0
    assert lrsmc.simulate(model, trials=2, steps=10).observations.dtype == np.int64
    assert lrsmc.sample(demo.teacher, trials=2, steps=10).observations.dtype == np.float64


def test_encoder_proposal_trains_an_encoder_with_the_model(tmp_path):
    config = lrsmc.ModelConfig(rank=2, num_hidden=6, num_channels=4, observation="poisson", link="softplus")
    counts = lrsmc.sample(lrsmc.Model.initialise(config, seed=3), trials=12, steps=30, seed=2).observations
    rnn = lrsmc.LowRankRNN(
        rank=2, num_hidden=6, observation="poisson", proposal="encoder", encoder_kernels=(5, 1),
        encoder_padding="windowed", particles=8, epochs=3, batch_size=4, optimizer="adam",
        learning_rate=2e-2, device="cpu", seed=5, verbose=False,
    )
    rnn.fit(counts)
    encoder = rnn.model_.config.encoder
    assert encoder == dict(kernels=[5, 1], channels=[64], activation="gelu", padding="windowed",
                           padding_mode="zeros", init_scale=0.1, constant_variance=False)
    assert rnn.model_.parameter_shapes["encoder_conv1_weight"] == (64, 4, 5)
    # The encoder is trained with the model: its weights moved from their initialisation.
    start = lrsmc.Model.initialise(rnn.model_config(4), seed=5)
    assert not np.array_equal(start.get("encoder_mean_weight"), rnn.model_.get("encoder_mean_weight"))
    # "auto" filters with the model's encoder; the file keeps it.
    auto = lrsmc.filter(rnn.model_, counts, particles=50, seed=1)
    explicit = lrsmc.filter(rnn.model_, counts, particles=50, seed=1, proposal="encoder")
    assert auto.elbo == explicit.elbo and np.isfinite(auto.elbo)
    assert lrsmc.filter(rnn.model_, counts, particles=50, seed=1, proposal="bootstrap").elbo != auto.elbo
    path = str(tmp_path / "encoder.npz")
    lrsmc.save_model(rnn.model_, path)
    loaded = lrsmc.load_model(path)
    assert loaded.config.to_json() == rnn.model_.config.to_json()
    np.testing.assert_array_equal(loaded.parameters, rnn.model_.parameters)
    # A learning rate the encoder does not survive is announced.
    with pytest.warns(UserWarning, match="the encoder proposal at learning rate 0.01: above about 2e-3"):
        lrsmc.fit_model(rnn.model_, counts, epochs=1, learning_rate=1e-2, particles=4, batch_size=6)
    # Forecast steps: the command line's --t-forward, in filtering and in training.
    forecast = lrsmc.filter(rnn.model_, counts, particles=50, seed=1, t_forward=5)
    assert np.isfinite(forecast.elbo) and forecast.elbo != auto.elbo
    with pytest.raises(lrsmc.InvalidInputError, match="t_forward must leave at least one step"):
        lrsmc.filter(rnn.model_, counts, t_forward=30)
    forecaster = lrsmc.LowRankRNN(**{**rnn.get_params(), "t_forward": 5, "epochs": 1}).fit(counts)
    assert forecaster.get_params()["t_forward"] == 5 and forecaster.completed_
    # A model without an encoder cannot filter with the encoder proposal.
    with pytest.raises(lrsmc.InvalidInputError, match="the encoder proposal needs a model with an encoder"):
        lrsmc.filter(lrsmc.Model.initialise(config, seed=3), counts, proposal="encoder")
    with pytest.raises(lrsmc.InvalidInputError, match="encoder_padding is not recognised; got 'sideways'"):
        lrsmc.LowRankRNN(observation="poisson", proposal="encoder", encoder_padding="sideways").model_config(4)


def test_one_to_one_readouts_fit_a_unit_per_channel(tmp_path):
    config = lrsmc.ModelConfig(rank=2, num_hidden=5, num_channels=5, observation="poisson", link="softplus",
                               readout_from="rates")
    assert config.readout_from == "rates"
    teacher = lrsmc.Model.initialise(config, seed=3)
    assert teacher.parameter_shapes["readout_gain"] == (5,) and "readout_weight" not in teacher.parameter_shapes
    counts = lrsmc.sample(teacher, trials=8, steps=20, seed=2).observations
    rnn = lrsmc.LowRankRNN(rank=2, observation="poisson", readout_from="rates", particles=8, epochs=2,
                           batch_size=4, device="cpu", seed=5, verbose=False)
    rnn.fit(counts)
    # num_hidden left at None: a unit per channel.
    assert rnn.model_.config.num_hidden == 5 and rnn.model_.config.readout_from == "rates"
    path = str(tmp_path / "rates.npz")
    lrsmc.save_model(rnn.model_, path)
    loaded = lrsmc.LowRankRNN.load(path)
    assert loaded.get_params()["readout_from"] == "rates"
    np.testing.assert_array_equal(loaded.model_.parameters, rnn.model_.parameters)
    with pytest.raises(lrsmc.InvalidInputError, match="channels must equal hidden; got channels 5 and hidden 7"):
        lrsmc.LowRankRNN(num_hidden=7, readout_from="currents").model_config(5)
    with pytest.raises(lrsmc.InvalidInputError, match="readout_from 'z_and_v' reads the inputs"):
        lrsmc.ModelConfig(num_channels=4, readout_from="z_and_v")
    with pytest.raises(lrsmc.InvalidInputError, match="readout_from is not recognised; got 'spikes'"):
        lrsmc.ModelConfig(readout_from="spikes")


def test_auto_trains_an_encoder_for_counts_at_stable_learning_rates():
    counts = np.random.default_rng(1).poisson(1.0, size=(4, 12, 3))
    rnn = lrsmc.LowRankRNN(rank=1, num_hidden=4, observation="poisson", epochs=1, particles=4,
                           encoder_kernels=(3, 1), encoder_channels=(4,), device="cpu", verbose=False)
    assert rnn.fit(counts).model_.config.encoder["kernels"] == [3, 1]
    # Above the encoder's stable learning rates, when asked, and for Gaussian data: none.
    assert lrsmc.LowRankRNN(observation="poisson", learning_rate=1e-2).model_config(5).encoder is None
    assert lrsmc.LowRankRNN(observation="poisson", preset="small").model_config(5).encoder is None
    assert lrsmc.LowRankRNN(observation="poisson", proposal="bootstrap").model_config(5).encoder is None
    assert lrsmc.LowRankRNN().model_config(5).encoder is None


def test_smoothing_draws_trajectories_whose_mean_is_the_latents(demo, fitted):
    observations = demo.observations[:3, :20]
    result = lrsmc.smooth(demo.teacher, observations, particles=64, trajectories=5, seed=2)
    assert result.trajectories.shape == (3, 5, 20, 2) and result.latents.shape == (3, 20, 2)
    np.testing.assert_allclose(result.trajectories.mean(axis=1), result.latents, rtol=1e-12, atol=1e-12)
    filtered = lrsmc.filter(demo.teacher, observations, particles=64, seed=2)
    assert result.elbo == filtered.elbo
    assert not np.allclose(result.latents[:, :-1], filtered.latents[:, :-1])
    assert fitted.smooth(observations, particles=32, trajectories=3).trajectories.shape[:2] == (3, 3)
    with pytest.raises(lrsmc.InvalidInputError, match="trajectories is out of range; got 0"):
        lrsmc.smooth(demo.teacher, observations, trajectories=0)


def test_sample_starts_from_given_states_or_a_posterior(demo, fitted):
    states = np.array([[0.5, -1.0], [2.0, 0.25]])
    drawn = lrsmc.sample(demo.teacher, 2, 6, initial_states=states, seed=4)
    np.testing.assert_array_equal(drawn.latents[:, 0], states)
    with pytest.raises(lrsmc.InvalidInputError, match=r"initial_states have shape \(3, 2\); expected \(2, 2\)"):
        lrsmc.sample(demo.teacher, 2, 6, initial_states=np.zeros((3, 2)))
    # The fitted model's posterior of three recorded trials at their step 4 starts three sequences.
    X = demo.observations[:3, :10]
    posterior = fitted.sample(steps=5, posterior_of=X, init_step=4, particles=64, seed=2)
    paths = fitted.smooth(X, particles=64, trajectories=1, seed=2).trajectories
    np.testing.assert_array_equal(posterior.latents[:, 0], paths[:, 0, 4])
    assert posterior.observations.shape == (3, 5, 20)
    with pytest.raises(lrsmc.InvalidInputError, match="init_step is out of range; got 10"):
        fitted.sample(steps=5, posterior_of=X, init_step=10)
