// The packed float32 CPU engine (the CPU's default) against the float64 reference on the same
// Philox draws, the comparisons a GPU passes against the CPU float engine
// (support/engine_comparison.hpp): following the reference's run step by step, every particle,
// log-weight, filtered mean and ELBO within device_tolerance, and the gradient along the
// reference's ancestors within a relative norm of 1e-3 per parameter block. Every runnable
// option combination, particle counts that fill no pack, one pack or many, inputs, the
// effective-sample-size threshold, and the backend's choice of engine.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "cpu/cpu_engine.hpp"
#include "cpu/particle_pack.hpp"
#include "lrsmc/backend.hpp"
#include "lrsmc/errors.hpp"
#include "support/engine_comparison.hpp"
#include "support/test_models.hpp"
#include "support/test_names.hpp"

namespace lrsmc {
namespace {

class PackedEngineTest : public ::testing::TestWithParam<testing::OptionCombination> {
 protected:
  /// The comparison shape with this combination's nonlinearity, noise and read-out.
  [[nodiscard]] Model model(std::uint64_t seed) const {
    const auto [nonlinearity, proposal, observation, noise, resampling] = GetParam();
    return testing::random_model(
        testing::medium_config(nonlinearity, noise, observation.observation, observation.link),
        seed);
  }
  /// This combination's proposal and resampling scheme with `particles` particles.
  [[nodiscard]] FilterOptions options(int particles) const {
    FilterOptions options;
    options.num_particles = particles;
    options.proposal = std::get<1>(GetParam());
    options.resampling = std::get<4>(GetParam());
    return options;
  }
  [[nodiscard]] std::string label(int particles) const {
    return ::testing::PrintToString(GetParam()) + ", K = " + std::to_string(particles);
  }
};

// K = 300: 19 packs, the last one partly padding, and two weight tiles; K = 10: one pack with
// six padding lanes (the paper's training setting).
TEST_P(PackedEngineTest, FilterFollowsTheFloat64Engine) {
  const Model teacher = model(12);
  const SequenceBatch batch = testing::sampled_batch(teacher, 5, 20, 4);
  for (const int particles : {300, 10})
    testing::expect_packed_follows_reference(teacher, batch, options(particles), 99,
                                             label(particles));
}

TEST_P(PackedEngineTest, GradientFollowsTheFloat64Engine) {
  const Model teacher = model(21);
  const SequenceBatch batch = testing::sampled_batch(teacher, 4, 15, 6);
  for (const int particles : {10, 150})
    testing::expect_packed_gradient_follows_reference(teacher, batch, options(particles), 31,
                                                      label(particles));
}

INSTANTIATE_TEST_SUITE_P(AllOptions, PackedEngineTest,
                         ::testing::ValuesIn(testing::runnable_combinations(
                             {Resampling::systematic, Resampling::stratified,
                              Resampling::multinomial})),
                         testing::combination_name);

// Particle counts around the pack width: less than a pack, exactly one, one more, several with a
// partial last pack, and more than one weight tile with many full packs.
TEST(PackedEngine, EveryPackFilling) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity),
                            14);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 8, 5);
  for (const int particles : {1, 5, cpu::pack_width, cpu::pack_width + 1, 3 * cpu::pack_width - 1,
                              4 * cpu::pack_width, 600}) {
    FilterOptions options;
    options.num_particles = particles;
    testing::expect_packed_follows_reference(model, batch, options, 8,
                                             "K = " + std::to_string(particles));
    testing::expect_packed_gradient_follows_reference(model, batch, options, 8,
                                                      "K = " + std::to_string(particles));
  }
}

// Carried weights under an effective-sample-size threshold, where the weights' adjoint flows
// across steps (the comparison shape has an input: its currents and μ_0's projection). The
// model is the option combinations' one, whose data stay moderate: device_tolerance assumes
// sums that cancel by at most κ = 16, which an exploding trajectory (observations of 10^4)
// breaks for any float32 engine.
TEST(PackedEngine, EffectiveSampleSizeThreshold) {
  const ModelConfig config = testing::medium_config(Nonlinearity::relu, NoiseType::full,
                                                    Observation::gaussian, Link::identity);
  const Model model = testing::random_model(config, 12);
  const SequenceBatch batch = testing::sampled_batch(model, 4, 25, 9);
  double largest = 0;
  for (const double x : batch.observations) largest = std::max(largest, std::fabs(x));
  ASSERT_LT(largest, 100.0) << "the test's data left the range the tolerance assumes";
  for (const double threshold : {0.0, 0.5, 1.0}) {
    for (const auto proposal : {Proposal::bootstrap, Proposal::optimal}) {
      FilterOptions options;
      options.num_particles = 70;
      options.proposal = proposal;
      options.resample_threshold = threshold;
      const std::string label =
          "threshold " + std::to_string(threshold) + ", " + to_string(proposal);
      testing::expect_packed_follows_reference(model, batch, options, 2, label);
      testing::expect_packed_gradient_follows_reference(model, batch, options, 2, label);
    }
  }
}

// The Poisson read-out's links, whose exp and log run as vectorised functions on packs.
TEST(PackedEngine, PoissonLinks) {
  for (const Link link : {Link::exp, Link::softplus, Link::relu}) {
    const ModelConfig config =
        testing::medium_config(Nonlinearity::tanh, NoiseType::diag, Observation::poisson, link);
    const Model model = testing::random_model(config, 17);
    const SequenceBatch batch = testing::sampled_batch(model, 3, 12, 2);
    FilterOptions options;
    options.num_particles = 40;
    options.proposal = Proposal::bootstrap;
    testing::expect_packed_follows_reference(model, batch, options, 6, to_string(link));
    testing::expect_packed_gradient_follows_reference(model, batch, options, 6, to_string(link));
  }
}

// The read-outs beyond Bᵀz: Bᵀ[v; z] and the one-to-one read-outs of currents and rates (the
// comparison shape has an input, which they see at the observation's step), Gaussian and
// Poisson.
TEST(PackedEngine, EveryReadout) {
  for (const auto& [label, model] : testing::readout_models(19)) {
    const SequenceBatch batch = testing::sampled_batch(model, 3, 12, 4);
    FilterOptions options;
    options.num_particles = 40;
    options.proposal = Proposal::bootstrap;
    testing::expect_packed_follows_reference(model, batch, options, 6, label);
    testing::expect_packed_gradient_follows_reference(model, batch, options, 6, label);
  }
}

// One long recording and fewer trials than threads: each step's particle blocks run on every
// thread, with results bitwise those of one thread, in every precision.
TEST(PackedEngine, FewTrialsShareTheirParticleBlocksAmongThreads) {
  const Model model =
      testing::random_model(testing::medium_config(Nonlinearity::clipped_relu, NoiseType::full,
                                                   Observation::gaussian, Link::identity),
                            3);
  FilterOptions options;
  options.num_particles = 300;
  for (const int trials : {1, 2}) {
    const SequenceBatch batch = testing::sampled_batch(model, trials, 40, 2);
    for (const auto precision :
         {CpuPrecision::packed_float32, CpuPrecision::float64, CpuPrecision::device_float32}) {
      BackendOptions one, several;
      one.num_threads = 1;
      several.num_threads = 3;
      one.cpu_precision = several.cpu_precision = precision;
      const std::string label = std::to_string(trials) + " trials, " + to_string(precision);
      const FilterRequest request{true, true};
      const FilterResult a =
          make_backend(BackendKind::cpu, one)->filter(model, batch, options, 5, request);
      const FilterResult b =
          make_backend(BackendKind::cpu, several)->filter(model, batch, options, 5, request);
      testing::expect_identical(a, b, label);
      const GradientResult c =
          make_backend(BackendKind::cpu, one)->elbo_gradient(model, batch, options, 5);
      const GradientResult d =
          make_backend(BackendKind::cpu, several)->elbo_gradient(model, batch, options, 5);
      testing::expect_identical(model.config, c, d, label);
    }
  }
}

TEST(PackedEngine, IsTheCpuBackendsDefault) {
  EXPECT_EQ(BackendOptions{}.cpu_precision, CpuPrecision::packed_float32);
  EXPECT_EQ(make_backend(BackendKind::cpu)->name(), "cpu (float32)");
  EXPECT_EQ(testing::reference_backend()->name(), "cpu (float64)");
  const Model model =
      testing::random_model(testing::small_config(Nonlinearity::relu, NoiseType::full,
                                                  Observation::gaussian, Link::identity),
                            4);
  const SequenceBatch batch = testing::sampled_batch(model, 3, 10, 1);
  FilterOptions options;
  options.num_particles = 33;
  const GradientResult by_default =
      make_backend(BackendKind::cpu)->elbo_gradient(model, batch, options, 7);
  const GradientResult packed = cpu::gradient_of_trials_packed(model, batch, options, 7, 1);
  EXPECT_EQ(by_default.elbo, packed.elbo);
  EXPECT_EQ(by_default.gradient, packed.gradient);
}

TEST(PackedEngine, PrecisionNamesParseAndBadOnesAreRefused) {
  for (const auto precision :
       {CpuPrecision::packed_float32, CpuPrecision::float64, CpuPrecision::device_float32})
    EXPECT_EQ(parse_cpu_precision(to_string(precision)), precision);
  try {
    (void)parse_cpu_precision("half", "--precision");
    FAIL() << "an unknown precision was accepted";
  } catch (const InvalidInput& error) {
    EXPECT_NE(std::string(error.what()).find("--precision is not recognised; got 'half'"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace lrsmc
