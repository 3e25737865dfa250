"""Fixed points from Python on networks whose fixed points are known."""

import numpy as np
import pytest

import lrsmc


def test_demo_teacher_has_an_unstable_spiral_at_the_origin(demo):
    # Every unit is on at z = 0 (m_i·0 − h_i = 1 > 0), and Σ_i n_i = 0 for evenly spaced angles,
    # so F(0) = 0; the map expands near the origin towards the limit cycle.
    points = lrsmc.fixed_points(demo.teacher)
    assert len(points) == 1
    (origin,) = points
    np.testing.assert_allclose(origin.z, 0.0, atol=1e-12)
    assert origin.stability == "unstable_spiral"
    assert np.all(np.abs(origin.eigenvalues) > 1) and np.all(origin.eigenvalues.imag != 0)
    assert list(origin.pattern) == [1] * 20


def test_bistable_tanh_network():
    # z = 2 tanh(z): the origin (slope 2, unstable) and ±z* with z* = 2 tanh(z*) ≈ 1.915 (stable).
    result = lrsmc.find_fixed_points(
        [[1.0]], [[2.0]], [0.0], decay=0.0, nonlinearity="tanh", method="numerical", num_starts=50, seed=1
    )
    z = np.array([p.z[0] for p in result.fixed_points])
    stabilities = [p.stability for p in result.fixed_points]
    np.testing.assert_allclose(z, [-1.9150080, 0.0, 1.9150080], atol=1e-6)
    assert stabilities == ["stable_node", "unstable_node", "stable_node"]
    np.testing.assert_allclose(2 * np.tanh(z), z, atol=1e-12)


def test_exact_equals_brute_force_and_points_are_fixed():
    rng = np.random.default_rng(9)  # 2 relu and 5 clipped-relu fixed points
    hidden, rank = 8, 2
    m = rng.normal(size=(hidden, rank))
    n = rng.normal(size=(rank, hidden)) * 1.5
    h = rng.normal(size=hidden)
    for nonlinearity in ("relu", "clipped_relu"):
        exact = lrsmc.find_fixed_points(m, n, h, 0.5, nonlinearity)
        brute = lrsmc.find_fixed_points(m, n, h, 0.5, nonlinearity, method="brute_force")
        assert len(exact.fixed_points) == len(brute.fixed_points) >= 1
        for a, b in zip(exact.fixed_points, brute.fixed_points):
            np.testing.assert_allclose(a.z, b.z, atol=1e-9)
            assert a.stability == b.stability


def test_model_fixed_points_satisfy_the_latent_map(random_model):
    for point in lrsmc.fixed_points(random_model):
        np.testing.assert_allclose(lrsmc.latent_map(random_model, point.z), point.z, atol=1e-9)


def test_tanh_model_uses_the_numerical_search():
    config = lrsmc.ModelConfig(rank=2, num_hidden=16, num_channels=3, nonlinearity="tanh")
    model = lrsmc.Model.initialise(config, seed=2)
    points = lrsmc.fixed_points(model, num_starts=20)
    assert points, "the numerical search should find at least one fixed point"
    for point in points:
        np.testing.assert_allclose(lrsmc.latent_map(model, point.z), point.z, atol=1e-8)
    with pytest.raises(lrsmc.InvalidInputError, match="tanh"):
        lrsmc.fixed_points(model, method="exact")


def test_constant_input_shifts_the_fixed_points():
    config = lrsmc.ModelConfig(rank=2, num_hidden=10, num_channels=3, num_inputs=1, nonlinearity="relu")
    model = lrsmc.Model.initialise(config, seed=3)
    for point in lrsmc.fixed_points(model, input=[0.7]):
        np.testing.assert_allclose(lrsmc.latent_map(model, point.z, input=[0.7]), point.z, atol=1e-9)
    with pytest.raises(lrsmc.InvalidInputError, match="input has 2 values; expected 1"):
        lrsmc.fixed_points(model, input=[0.1, 0.2])


def test_bad_network_shapes_are_invalid_input():
    with pytest.raises(lrsmc.InvalidInputError, match=r"n has the wrong shape; got \(3, 2\), expected \(2, 3\)"):
        lrsmc.find_fixed_points(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), 0.5, "relu")
    with pytest.raises(lrsmc.InvalidInputError, match="method is not recognised"):
        lrsmc.find_fixed_points(np.zeros((3, 2)), np.zeros((2, 3)), np.zeros(3), 0.5, "relu", method="guess")
