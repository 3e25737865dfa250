"""LowRankRNN among Python's tools: scikit-learn's estimator checks, cross_val_score and
GridSearchCV, pickling (the model file's bytes) for joblib workers, score as the held-out ELBO,
and progress bars on long fits and filters."""

import copy
import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import lrsmc
from lrsmc import _api, _core, _progress

from conftest import assert_models_equal, small_estimator

sklearn = pytest.importorskip(
    "sklearn", minversion="1.6", reason="scikit-learn comes with the test extra"
)
from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


def tiny_estimator(**overrides):
    """Small enough for scikit-learn's checks, which fit dozens of times on 1 to 100 rows."""
    params = dict(
        rank=2,
        num_hidden=8,
        particles=4,
        epochs=2,
        batch_size=2,
        window=5,
        windows_per_epoch=2,
        device="cpu",
        threads=1,
    )
    params.update(overrides)
    return lrsmc.LowRankRNN(**params)


# --- scikit-learn's estimator checks -------------------------------------------------------------

#: The checks that cannot pass, and why. Each one runs and is reported as xfail (XPASS if fixed).
EXPECTED_FAILED_CHECKS = {
    "check_methods_subset_invariance": (
        "rows are the time steps of one recording, and a step's filtered latent depends on the "
        "steps before it, so transforming a subset of rows differs from transforming them all"
    ),
    "check_methods_sample_order_invariance": (
        "rows are the time steps of one recording: shuffling them is another recording, whose "
        "filtered latents differ"
    ),
}


@parametrize_with_checks(
    [tiny_estimator()], expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_sklearn_array_api_check_in_an_interpreter_with_scipy_array_api():
    """check_array_api_input skips itself above unless SCIPY_ARRAY_API=1 was set before scipy was
    imported, so it runs here in a fresh interpreter."""
    code = (
        "import lrsmc\n"
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        f"check_array_api_input('LowRankRNN', lrsmc.{tiny_estimator()!r}, array_namespace='numpy', "
        "expect_only_array_outputs=False)\n"
        "print('passed')\n"
    )
    env = dict(os.environ, SCIPY_ARRAY_API="1")
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "passed"


def test_every_expected_failure_names_a_check_that_runs():
    from sklearn.utils.estimator_checks import estimator_checks_generator

    # Each check comes as functools.partial(check, name), nested partials flattened.
    names = {check.func.__name__ for _, check in estimator_checks_generator(tiny_estimator())}
    assert "check_estimators_pickle" in names
    assert set(EXPECTED_FAILED_CHECKS) <= names


def test_sklearn_sees_an_unsupervised_transformer_of_2d_and_3d_arrays():
    from sklearn.utils import get_tags

    tags = get_tags(tiny_estimator())
    assert tags.estimator_type is None and tags.target_tags.required is False
    assert tags.transformer_tags is not None
    assert tags.input_tags.two_d_array and tags.input_tags.three_d_array
    assert not tags.input_tags.sparse and not tags.input_tags.allow_nan


# --- cross-validation and grid search ------------------------------------------------------------


def test_cross_val_score_scores_each_fold_on_its_held_out_trials(demo):
    X = demo.observations[:12, :30]
    estimator = tiny_estimator(num_hidden=6, particles=4, epochs=2)
    folds = KFold(n_splits=3)
    scores = cross_val_score(estimator, X, cv=folds)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    for score, (train, test) in zip(scores, folds.split(X)):
        by_hand = clone(estimator).fit(X[train]).score(X[test])
        assert score == by_hand


def test_grid_search_picks_the_best_held_out_elbo(demo):
    X = demo.observations[:12, :30]
    grid = {"rank": [1, 2], "learning_rate": [1e-3, 3e-2]}
    search = GridSearchCV(tiny_estimator(epochs=3), grid, cv=2)
    search.fit(X)
    means = search.cv_results_["mean_test_score"]
    assert means.shape == (4,) and np.all(np.isfinite(means))
    assert search.best_score_ == means.max()
    best = search.cv_results_["params"][int(np.argmax(means))]
    assert search.best_params_ == best
    assert search.best_estimator_.rank == best["rank"]
    assert search.best_estimator_.model_.config.rank == best["rank"]
    assert search.score(X) == search.best_estimator_.score(X)


def test_cross_validation_in_joblib_worker_processes(demo):
    """n_jobs=2 sends the estimator to loky worker processes and, with return_estimator, the
    fitted estimators back: both ways by pickle."""
    from sklearn.model_selection import cross_validate

    X = demo.observations[:8, :30]
    estimator = tiny_estimator()
    parallel = cross_validate(estimator, X, cv=2, n_jobs=2, return_estimator=True)
    serial = cross_validate(estimator, X, cv=2, n_jobs=1, return_estimator=True)
    np.testing.assert_array_equal(parallel["test_score"], serial["test_score"])
    for from_worker, here in zip(parallel["estimator"], serial["estimator"]):
        assert_models_equal(here.model_, from_worker.model_)


# --- pickling ------------------------------------------------------------------------------------


def test_pickled_estimator_filters_identically(fitted, demo):
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored is not fitted and restored.model_ is not fitted.model_
    assert restored.get_params() == fitted.get_params()
    assert restored.n_features_in_ == fitted.n_features_in_ == 20
    assert restored.completed_ == fitted.completed_ and restored.stop_reason_ == fitted.stop_reason_
    for name, values in fitted.history_.items():
        np.testing.assert_array_equal(restored.history_[name], values, err_msg=name)
    assert_models_equal(fitted.model_, restored.model_)
    expected = fitted.filter(demo.observations, particles=50, seed=3, return_particles=True)
    got = restored.filter(demo.observations, particles=50, seed=3, return_particles=True)
    assert got.elbo == expected.elbo
    for name in ("elbo_per_trial", "latents", "particles", "log_weights", "ancestors", "resampled"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


def test_a_model_pickles_as_its_model_file_bytes(tmp_path, random_model):
    path = tmp_path / "model.npz"
    lrsmc.save_model(random_model, path)
    file_bytes = path.read_bytes()
    pickled = pickle.dumps(random_model)
    assert file_bytes in pickled  # the model file itself, not a re-encoding
    restored = pickle.loads(pickled)
    assert isinstance(restored, lrsmc.Model)
    assert_models_equal(random_model, restored)
    np.testing.assert_array_equal(restored.parameters, random_model.parameters)
    assert _api._model_file_bytes(restored) == file_bytes


def test_unfitted_and_copied_estimators(fitted):
    unfitted = pickle.loads(pickle.dumps(tiny_estimator(rank=3)))
    assert unfitted.rank == 3 and not hasattr(unfitted, "model_")
    with pytest.raises(lrsmc.NotFittedError):
        unfitted.transform(np.zeros((10, 2)))
    copied = copy.deepcopy(fitted)
    assert_models_equal(fitted.model_, copied.model_)
    cloned = clone(fitted)
    assert cloned.get_params() == fitted.get_params() and not hasattr(cloned, "model_")


# --- score, transform and input checks -----------------------------------------------------------


def test_score_is_the_mean_elbo_per_step_and_ranks_the_true_model_first(tmp_path, demo):
    train, held_out = demo.observations[:30], demo.observations[30:]
    path = tmp_path / "teacher.npz"
    lrsmc.save_model(demo.teacher, path)
    teacher = lrsmc.LowRankRNN.load(path, device="cpu")
    untrained = small_estimator(epochs=1).fit(train)
    result = teacher.filter(held_out, particles=200)
    assert teacher.score(held_out, particles=200) == result.elbo
    assert result.elbo == pytest.approx(result.elbo_per_trial.mean(), rel=1e-12)
    assert teacher.score(held_out) == teacher.score(held_out)  # a fixed filter seed
    assert teacher.score(held_out) > untrained.score(held_out) + 0.5


def test_transform_of_one_recording_is_one_row_per_time_step(fitted, demo):
    recording = demo.observations[0]  # (50 steps, 20 channels)
    latents = fitted.transform(recording)
    assert latents.shape == (50, 2)
    np.testing.assert_array_equal(latents, fitted.filter(recording).latents[0])
    assert fitted.transform(demo.observations[:3]).shape == (3, 50, 2)


def test_fit_transform_is_fit_then_transform(demo):
    X = demo.observations[:6, :20]
    np.testing.assert_array_equal(
        tiny_estimator().fit_transform(X), tiny_estimator().fit(X).transform(X)
    )


def test_n_features_in_and_a_mismatch_in_both_vocabularies(fitted, demo):
    assert fitted.n_features_in_ == 20
    message = (
        r"X has 19 features, but LowRankRNN is expecting 20 features as input; X: channel count "
        r"does not match the model; got 19 \(layout trials,time,channels\), expected 20"
    )
    for method in (fitted.transform, fitted.score, fitted.filter):
        with pytest.raises(lrsmc.InvalidInputError, match=message):
            method(demo.observations[:, :, :19])


def sparse_array(values):
    from scipy import sparse  # scikit-learn's dependency

    return sparse.csr_array(values)


@pytest.mark.parametrize(
    "make_input, error, message",
    [
        (lambda: np.ones(20), lrsmc.InvalidInputError, r"shape \(20,\); .* Reshape your data"),
        (lambda: np.ones((12, 0)), lrsmc.InvalidInputError,
         r"X: 0 feature\(s\) \(shape=\(12, 0\)\) while a minimum of 1 is required; got no "
         r"channels"),
        (lambda: np.ones((10, 2), dtype=complex), lrsmc.InvalidInputError,
         "dtype complex128; expected real numbers .* Complex data not supported"),
        (lambda: sparse_array(np.ones((10, 2))), lrsmc.InvalidInputError,
         "X: sparse input is not supported; got csr_array, expected a dense array"),
        (lambda: np.array([[1.0, {}]] * 10, dtype=object), TypeError,
         "X: array has dtype object and holds a value that is not a number"),
        (lambda: np.ones((1, 10)), lrsmc.InvalidInputError,
         r"X: the recording has 1 sample\(s\) \(time steps\), fewer than one training window; "
         r"got window=5, expected at most 1"),
    ],
    ids=["one_dimension", "no_channels", "complex", "sparse", "object_not_numbers", "one_step"],
)
def test_inputs_sklearn_sends_are_refused_with_the_parameter_and_value(make_input, error, message):
    with pytest.raises(error, match=message):
        tiny_estimator().fit(make_input())


def test_numbers_held_as_objects_are_read_as_numbers(demo):
    X = demo.observations[:4, :20]
    np.testing.assert_array_equal(
        tiny_estimator().fit(X.astype(object)).transform(X.astype(object)),
        tiny_estimator().fit(X).transform(X),
    )


# --- progress ------------------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_long_fit_shows_a_progress_bar_in_a_terminal(demo, monkeypatch):
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    small_estimator(epochs=4).fit(demo.observations)
    shown = terminal.getvalue()
    assert "lrsmc fit" in shown and "4/4" in shown and "elbo " in shown


def test_a_short_fit_or_a_log_shows_nothing(demo, monkeypatch):
    # "Short" is relative to DELAY_SECONDS; an hour makes every fit here short however slow the
    # build (a sanitizer or CUDA-emulation build runs these fits at seconds per epoch).
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 3600.0)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    small_estimator(epochs=2).fit(demo.observations)
    assert terminal.getvalue() == ""
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)
    log = io.StringIO()  # not a terminal: "auto" draws nothing
    monkeypatch.setattr(sys, "stderr", log)
    small_estimator(epochs=2).fit(demo.observations)
    small_estimator(epochs=2, verbose=False).fit(demo.observations)
    assert log.getvalue() == ""


def test_verbose_true_prints_the_command_lines_progress_lines(demo, capsys):
    small_estimator(epochs=2, verbose=True).fit(demo.observations)
    err = capsys.readouterr().err
    assert err.startswith("lrsmc fit: X: 40 trials × 50 steps × 20 channels")
    assert "epoch 1/2 | elbo" in err and "epoch 2/2 | elbo" in err


def test_a_long_filter_runs_in_parts_with_the_same_numbers(fitted, demo, monkeypatch, capsys):
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)  # every call counts as long
    calls = []
    engine_filter = _core.filter
    monkeypatch.setattr(_core, "filter", lambda *a, **k: calls.append(k) or engine_filter(*a, **k))
    options = dict(particles=30, seed=5, return_particles=True)
    in_parts = lrsmc.filter(fitted.model_, demo.observations, progress=True, **options)
    parts = [(call["first_trial"], call["num_trials"]) for call in calls]
    assert parts == [(2 * part, 2) for part in range(20)]
    assert "lrsmc filter" in capsys.readouterr().err
    calls.clear()
    whole = lrsmc.filter(fitted.model_, demo.observations, progress=False, **options)
    assert len(calls) == 1 and capsys.readouterr().err == ""
    assert in_parts.elbo == whole.elbo
    for name in ("elbo_per_trial", "latents", "particles", "log_weights", "ancestors", "resampled"):
        expected, got = getattr(whole, name), getattr(in_parts, name)
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_a_short_filter_is_one_call_after_a_probe(fitted, demo, monkeypatch, capsys):
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 3600.0)  # short however slow the build
    calls = []
    engine_filter = _core.filter
    monkeypatch.setattr(_core, "filter", lambda *a, **k: calls.append(k) or engine_filter(*a, **k))
    result = lrsmc.filter(fitted.model_, demo.observations, particles=30, progress=True)
    # The first twentieth of the trials says the call is short: the rest goes in one call.
    assert [(call["first_trial"], call["num_trials"]) for call in calls] == [(0, 2), (2, 38)]
    assert capsys.readouterr().err == ""
    one_call = lrsmc.filter(fitted.model_, demo.observations, particles=30, progress=False)
    assert result.elbo == one_call.elbo


def test_a_long_sample_runs_in_parts_with_the_same_numbers(fitted, monkeypatch, capsys):
    monkeypatch.setattr(_progress, "DELAY_SECONDS", 0.0)  # every call counts as long
    calls = []
    engine_sample = _core.sample
    monkeypatch.setattr(_core, "sample", lambda *a, **k: calls.append((a[1], k)) or engine_sample(*a, **k))
    in_parts = lrsmc.sample(fitted.model_, trials=40, steps=30, burn_in=5, seed=3, progress=True)
    assert [(count, call["first_trial"]) for count, call in calls] == [(2, 2 * part) for part in range(20)]
    assert "lrsmc sample" in capsys.readouterr().err
    calls.clear()
    whole = lrsmc.sample(fitted.model_, trials=40, steps=30, burn_in=5, seed=3, progress=False)
    assert len(calls) == 1 and capsys.readouterr().err == ""
    for name in ("observations", "rates", "latents"):
        expected, got = getattr(whole, name), getattr(in_parts, name)
        assert got.dtype == expected.dtype and got.shape == (40, 30, expected.shape[2]), name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def test_progress_and_trial_ranges_are_checked(fitted, demo):
    with pytest.raises(lrsmc.InvalidInputError, match="progress is not recognised; got 'yes'"):
        lrsmc.filter(fitted.model_, demo.observations, progress="yes")
    with pytest.raises(lrsmc.InvalidInputError, match="verbose is not recognised; got 2"):
        small_estimator(verbose=2).fit(demo.observations)
    data = lrsmc.as_dataset(demo.observations)
    message = "first_trial is out of range; got 40, expected 0 to 39"
    with pytest.raises(lrsmc.InvalidInputError, match=message):
        _core.filter(fitted.model_, data, particles=4, first_trial=40)
    message = "num_trials is out of range; got 3, expected 1 to 2"
    with pytest.raises(lrsmc.InvalidInputError, match=message):
        _core.filter(fitted.model_, data, particles=4, first_trial=38, num_trials=3)
