"""Shared fixtures: small demo data and a small fitted estimator, built once per session."""

import os

import numpy as np
import pytest

import lrsmc

# Idle OpenMP workers must not spin on the shared cores between calls (as in ctest).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def demo():
    """40 trials × 50 steps × 20 channels from the demo's oscillator teacher."""
    return lrsmc.demo_data(trials=40, steps=50, seed=3)


def small_estimator(**overrides):
    """The demo's student settings at a size that trains in a fraction of a second per epoch."""
    params = dict(
        rank=2,
        num_hidden=12,
        nonlinearity="relu",
        init_observation_std=0.3,
        particles=8,
        optimizer="adam",
        learning_rate=2e-2,
        learning_rate_end=2e-3,
        epochs=5,
        seed=4,
    )
    params.update(overrides)
    return lrsmc.LowRankRNN(**params)


@pytest.fixture(scope="session")
def fitted(demo):
    return small_estimator().fit(demo.observations)


@pytest.fixture()
def random_model():
    """A freshly initialised rank-2 model of 10 clipped-relu units and 6 channels."""
    config = lrsmc.ModelConfig(rank=2, num_hidden=10, num_channels=6)
    return lrsmc.Model.initialise(config, seed=11)


def assert_models_equal(expected, got):
    assert expected.config.to_json() == got.config.to_json()
    for name in expected.parameter_shapes:
        np.testing.assert_array_equal(expected.get(name), got.get(name), err_msg=name)
