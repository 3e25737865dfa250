// The convolutional encoder on the CPU: validation, parameter blocks, initialisation, and the
// forward and backward passes, one matrix product per kernel tap over the whole batch.
#include "lrsmc/encoder.hpp"

#include <Eigen/Core>
#include <cmath>

#include "lrsmc/errors.hpp"
#include "lrsmc/math/encoder.hpp"
#include "lrsmc/math/philox.hpp"

namespace lrsmc {

void validate(const EncoderConfig& config, int input_channels, int rank, int steps,
              const std::string& source) {
  LRSMC_REQUIRE(!config.kernels.empty(), source,
                ": encoder kernels are empty; expected at least one kernel size (e.g. 21,11,1)");
  LRSMC_REQUIRE(config.channels.size() + 1 == config.kernels.size(), source, ": the encoder has ",
                config.kernels.size(), " kernels and ", config.channels.size(),
                " channel counts; expected one channel count fewer than kernels (the heads have "
                "the rank's outputs)");
  LRSMC_REQUIRE(input_channels >= 1, source, ": the encoder needs at least one input channel; got ",
                input_channels);
  LRSMC_REQUIRE(rank >= 1, source, ": the encoder needs a rank of at least 1; got ", rank);
  LRSMC_REQUIRE(steps >= 1, source, ": the encoder needs at least one time step; got ", steps);
  for (std::size_t layer = 0; layer < config.kernels.size(); ++layer) {
    const int kernel = config.kernels[layer];
    LRSMC_REQUIRE(kernel >= 1 && kernel <= 100000, source, ": encoder kernel ", layer + 1,
                  " is out of range; got ", kernel, ", expected 1 to 100000");
    const math::PadWidths pad = math::pad_widths(config.padding, kernel);
    const int overhang = pad.left > pad.right ? pad.left : pad.right;
    // reflect mirrors at most length − 1 steps without repeating the edge; circular wraps once.
    if (config.padding_mode == PaddingMode::reflect)
      LRSMC_REQUIRE(overhang < steps, source, ": encoder kernel ", layer + 1, " of ", kernel,
                    " taps pads ", overhang, " steps by reflection, which needs trials longer than ",
                    overhang, " steps; got ", steps,
                    " (a shorter kernel, or padding mode zeros or replicate)");
    if (config.padding_mode == PaddingMode::circular)
      LRSMC_REQUIRE(overhang <= steps, source, ": encoder kernel ", layer + 1, " of ", kernel,
                    " taps pads ", overhang, " steps circularly, which needs trials of at least ",
                    overhang, " steps; got ", steps,
                    " (a shorter kernel, or padding mode zeros or replicate)");
  }
  for (std::size_t layer = 0; layer < config.channels.size(); ++layer)
    LRSMC_REQUIRE(config.channels[layer] >= 1 && config.channels[layer] <= 100000, source,
                  ": encoder channel count ", layer + 1, " is out of range; got ",
                  config.channels[layer], ", expected 1 to 100000");
  LRSMC_REQUIRE(std::isfinite(config.init_scale) && config.init_scale > 0, source,
                ": encoder init_scale must be positive; got ", config.init_scale);
}

std::vector<int> default_encoder_channels(std::size_t kernels) {
  return std::vector<int>(kernels > 0 ? kernels - 1 : 0, 64);
}

std::vector<EncoderBlock> encoder_blocks(const EncoderConfig& config, int input_channels,
                                         int rank) {
  std::vector<EncoderBlock> blocks;
  std::size_t offset = 0;
  const auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    std::size_t size = 1;
    for (const std::int64_t extent : shape) size *= std::size_t(extent);
    blocks.push_back({std::move(name), std::move(shape), offset, size});
    offset += size;
  };
  std::int64_t in = input_channels;
  for (std::size_t layer = 0; layer < config.channels.size(); ++layer) {
    const std::int64_t out = config.channels[layer];
    const std::string prefix = "encoder_conv" + std::to_string(layer + 1);
    add(prefix + "_weight", {out, in, config.kernels[layer]});
    add(prefix + "_bias", {out});
    in = out;
  }
  const std::int64_t head_kernel = config.kernels.back();
  add("encoder_mean_weight", {rank, in, head_kernel});
  add("encoder_mean_bias", {rank});
  if (config.constant_variance) {
    add("encoder_log_variance", {rank});
  } else {
    add("encoder_log_variance_weight", {rank, in, head_kernel});
    add("encoder_log_variance_bias", {rank});
  }
  return blocks;
}

std::vector<double> initialise_encoder(const EncoderConfig& config, int input_channels, int rank,
                                       std::uint64_t seed) {
  const std::vector<EncoderBlock> blocks = encoder_blocks(config, input_channels, rank);
  std::vector<double> parameters(blocks.back().offset + blocks.back().size, 0.0);
  std::uint32_t counter = 0;
  // The encoder's own Philox address (trial 0xFFFFFFFD): its draws do not depend on the model's.
  const auto uniform_symmetric = [&](double bound) {
    const double u =
        math::uniform(seed, 0xFFFFFFFDu, 0, 0, math::DrawStream::generative, counter++);
    return bound * (2.0 * u - 1.0);
  };
  const double log_variance_shift = 2.0 * std::log(config.init_scale);
  for (std::size_t index = 0; index < blocks.size(); ++index) {
    const EncoderBlock& block = blocks[index];
    if (block.name == "encoder_log_variance") {
      for (std::size_t i = 0; i < block.size; ++i) parameters[block.offset + i] = log_variance_shift;
      continue;
    }
    // A bias follows its weight: both draw from ±1/√(fan in) of that weight.
    const EncoderBlock& weight = block.shape.size() == 3 ? block : blocks[index - 1];
    const double bound = 1.0 / std::sqrt(double(weight.shape[1] * weight.shape[2]));
    for (std::size_t i = 0; i < block.size; ++i)
      parameters[block.offset + i] = uniform_symmetric(bound);
    if (block.name == "encoder_log_variance_bias")
      for (std::size_t i = 0; i < block.size; ++i) parameters[block.offset + i] += log_variance_shift;
  }
  return parameters;
}

namespace {

template <typename Scalar>
using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename Scalar>
using MatrixMap = Eigen::Map<Matrix<Scalar>>;
template <typename Scalar>
using ConstMatrixMap = Eigen::Map<const Matrix<Scalar>>;

/// One convolution's geometry: the batch's rows (trial, step) and the padding's reach.
struct Convolution {
  int trials, steps, in, out, kernel, left;
  PaddingMode mode;
};

/// The convolution with kernel `kernel` from `in` to `out` channels over the batch.
Convolution convolution(const EncoderConfig& config, int kernel, int trials, int steps, int in,
                        int out) {
  return {trials, steps, in, out, kernel, math::pad_widths(config.padding, kernel).left,
          config.padding_mode};
}

/// The input step each output step's tap `tap` reads, or −1 for a zero (per step, the same for
/// every trial).
std::vector<int> tap_sources(const Convolution& c, int tap) {
  std::vector<int> sources(std::size_t(c.steps));
  for (int step = 0; step < c.steps; ++step)
    sources[std::size_t(step)] = math::padded_source(c.mode, step + tap - c.left, c.steps);
  return sources;
}

/// The weights of tap `tap` as an (out, in) matrix, from the (out, in, kernel) block.
template <typename Scalar>
Matrix<Scalar> tap_weights(const Convolution& c, const double* weight, int tap) {
  Matrix<Scalar> w(c.out, c.in);
  for (int o = 0; o < c.out; ++o)
    for (int i = 0; i < c.in; ++i)
      w(o, i) = Scalar(weight[(std::size_t(o) * std::size_t(c.in) + std::size_t(i)) *
                                  std::size_t(c.kernel) +
                              std::size_t(tap)]);
  return w;
}

/// The input rows tap `tap` reads: row (trial, step) is the input at (trial, source(step)).
template <typename Scalar>
Matrix<Scalar> gather(const Convolution& c, const Matrix<Scalar>& input,
                      const std::vector<int>& sources) {
  Matrix<Scalar> gathered = Matrix<Scalar>::Zero(input.rows(), c.in);
  for (int trial = 0; trial < c.trials; ++trial)
    for (int step = 0; step < c.steps; ++step) {
      const int source = sources[std::size_t(step)];
      if (source >= 0)
        gathered.row(std::int64_t(trial) * c.steps + step) =
            input.row(std::int64_t(trial) * c.steps + source);
    }
  return gathered;
}

/// out = bias + Σ_taps gather_tap(input) · W_tapᵀ, (trials·steps, out).
template <typename Scalar>
Matrix<Scalar> convolve(const Convolution& c, const Matrix<Scalar>& input, const double* weight,
                        const double* bias) {
  Matrix<Scalar> output(input.rows(), c.out);
  for (int o = 0; o < c.out; ++o) output.col(o).setConstant(Scalar(bias[o]));
  for (int tap = 0; tap < c.kernel; ++tap)
    output.noalias() +=
        gather(c, input, tap_sources(c, tap)) * tap_weights<Scalar>(c, weight, tap).transpose();
  return output;
}

/// Adds the convolution's parameter gradients to `weight_gradient` and `bias_gradient` and
/// returns the gradient with respect to its input (or nothing when `input_gradient` is false).
template <typename Scalar>
Matrix<Scalar> convolve_backward(const Convolution& c, const Matrix<Scalar>& input,
                                 const double* weight, const Matrix<Scalar>& output_gradient,
                                 double* weight_gradient, double* bias_gradient,
                                 bool input_gradient) {
  // Column sums as a product with ones: the form a GPU computes them in (device_encoder.cpp).
  const Matrix<Scalar> sums = Matrix<Scalar>::Ones(1, output_gradient.rows()) * output_gradient;
  for (int o = 0; o < c.out; ++o) bias_gradient[o] += double(sums(0, o));
  Matrix<Scalar> result;
  if (input_gradient) result = Matrix<Scalar>::Zero(input.rows(), c.in);
  for (int tap = 0; tap < c.kernel; ++tap) {
    const std::vector<int> sources = tap_sources(c, tap);
    const Matrix<Scalar> tap_gradient = output_gradient.transpose() * gather(c, input, sources);
    for (int o = 0; o < c.out; ++o)
      for (int i = 0; i < c.in; ++i)
        weight_gradient[(std::size_t(o) * std::size_t(c.in) + std::size_t(i)) *
                            std::size_t(c.kernel) +
                        std::size_t(tap)] += double(tap_gradient(o, i));
    if (!input_gradient) continue;
    // Each output row sends its gradient back to the input row its tap read.
    const Matrix<Scalar> spread = output_gradient * tap_weights<Scalar>(c, weight, tap);
    for (int trial = 0; trial < c.trials; ++trial)
      for (int step = 0; step < c.steps; ++step) {
        const int source = sources[std::size_t(step)];
        if (source >= 0)
          result.row(std::int64_t(trial) * c.steps + source) +=
              spread.row(std::int64_t(trial) * c.steps + step);
      }
  }
  return result;
}

template <typename Scalar>
std::vector<Scalar> to_vector(const Matrix<Scalar>& matrix) {
  return std::vector<Scalar>(matrix.data(), matrix.data() + matrix.size());
}

const EncoderBlock& block_named(const std::vector<EncoderBlock>& blocks, const std::string& name) {
  for (const EncoderBlock& block : blocks)
    if (block.name == name) return block;
  LRSMC_ASSERT(false);
  return blocks.front();
}

}  // namespace

template <typename Scalar>
EncoderPass<Scalar> encoder_forward(const EncoderConfig& config,
                                    const std::vector<double>& parameters,
                                    const std::vector<Scalar>& observations, int trials,
                                    int steps, int input_channels, int rank) {
  validate(config, input_channels, rank, steps);
  LRSMC_REQUIRE(trials >= 1, "encoder: needs at least one trial; got ", trials);
  const std::vector<EncoderBlock> blocks = encoder_blocks(config, input_channels, rank);
  LRSMC_REQUIRE(parameters.size() == blocks.back().offset + blocks.back().size,
                "encoder: got ", parameters.size(), " parameters, expected ",
                blocks.back().offset + blocks.back().size, " for this architecture");
  LRSMC_REQUIRE(observations.size() == std::size_t(trials) * std::size_t(steps) *
                                           std::size_t(input_channels),
                "encoder: got ", observations.size(), " observations, expected ", trials, " × ",
                steps, " × ", input_channels);
  EncoderPass<Scalar> pass;
  pass.trials = trials;
  pass.steps = steps;
  pass.rank = rank;
  const std::int64_t rows = std::int64_t(trials) * steps;
  Matrix<Scalar> input = ConstMatrixMap<Scalar>(observations.data(), rows, input_channels);
  int in = input_channels;
  for (std::size_t layer = 0; layer < config.channels.size(); ++layer) {
    const std::string prefix = "encoder_conv" + std::to_string(layer + 1);
    const Convolution c =
        convolution(config, config.kernels[layer], trials, steps, in, config.channels[layer]);
    Matrix<Scalar> pre =
        convolve(c, input, parameters.data() + block_named(blocks, prefix + "_weight").offset,
                 parameters.data() + block_named(blocks, prefix + "_bias").offset);
    pass.layer_inputs.push_back(to_vector(input));
    pass.pre_activations.push_back(to_vector(pre));
    for (std::int64_t i = 0; i < pre.size(); ++i)
      pre.data()[i] = math::activate(config.activation, pre.data()[i]).value;
    input = std::move(pre);
    in = c.out;
  }
  pass.layer_inputs.push_back(to_vector(input));
  const Convolution head = convolution(config, config.kernels.back(), trials, steps, in, rank);
  pass.mean = to_vector(convolve(head, input,
                                 parameters.data() + block_named(blocks, "encoder_mean_weight").offset,
                                 parameters.data() + block_named(blocks, "encoder_mean_bias").offset));
  if (config.constant_variance) {
    const double* constant = parameters.data() + block_named(blocks, "encoder_log_variance").offset;
    pass.log_variance.resize(std::size_t(rows) * std::size_t(rank));
    for (std::int64_t row = 0; row < rows; ++row)
      for (int r = 0; r < rank; ++r)
        pass.log_variance[std::size_t(row) * std::size_t(rank) + std::size_t(r)] = Scalar(constant[r]);
  } else {
    pass.log_variance = to_vector(
        convolve(head, input,
                 parameters.data() + block_named(blocks, "encoder_log_variance_weight").offset,
                 parameters.data() + block_named(blocks, "encoder_log_variance_bias").offset));
  }
  return pass;
}

template <typename Scalar>
std::vector<double> encoder_backward(const EncoderConfig& config,
                                     const std::vector<double>& parameters,
                                     const EncoderPass<Scalar>& pass,
                                     const std::vector<Scalar>& mean_gradient,
                                     const std::vector<Scalar>& log_variance_gradient) {
  const int trials = pass.trials, steps = pass.steps, rank = pass.rank;
  const std::int64_t rows = std::int64_t(trials) * steps;
  LRSMC_REQUIRE(mean_gradient.size() == std::size_t(rows) * std::size_t(rank) &&
                    log_variance_gradient.size() == mean_gradient.size(),
                "encoder: gradients of ", mean_gradient.size(), " and ",
                log_variance_gradient.size(), " values; expected ", rows * rank, " each");
  const int input_channels =
      int(pass.layer_inputs.front().size() / std::size_t(rows));
  const std::vector<EncoderBlock> blocks = encoder_blocks(config, input_channels, rank);
  std::vector<double> gradient(parameters.size(), 0.0);
  const auto at = [&](const std::string& name) { return block_named(blocks, name).offset; };
  const std::size_t hidden_layers = config.channels.size();
  const int head_in = hidden_layers == 0 ? input_channels : config.channels.back();
  const Matrix<Scalar> head_input =
      ConstMatrixMap<Scalar>(pass.layer_inputs.back().data(), rows, head_in);
  const Convolution head =
      convolution(config, config.kernels.back(), trials, steps, head_in, rank);
  const bool below = hidden_layers > 0;  // whether the heads' input needs a gradient
  Matrix<Scalar> input_gradient = convolve_backward(
      head, head_input, parameters.data() + at("encoder_mean_weight"),
      Matrix<Scalar>(ConstMatrixMap<Scalar>(mean_gradient.data(), rows, rank)),
      gradient.data() + at("encoder_mean_weight"), gradient.data() + at("encoder_mean_bias"),
      below);
  const Matrix<Scalar> log_variance_rows =
      ConstMatrixMap<Scalar>(log_variance_gradient.data(), rows, rank);
  if (config.constant_variance) {
    double* constant = gradient.data() + at("encoder_log_variance");
    const Matrix<Scalar> sums = Matrix<Scalar>::Ones(1, rows) * log_variance_rows;
    for (int r = 0; r < rank; ++r) constant[r] += double(sums(0, r));
  } else {
    const Matrix<Scalar> from_variance = convolve_backward(
        head, head_input, parameters.data() + at("encoder_log_variance_weight"),
        log_variance_rows, gradient.data() + at("encoder_log_variance_weight"),
        gradient.data() + at("encoder_log_variance_bias"), below);
    if (below) input_gradient += from_variance;
  }
  for (std::size_t layer = hidden_layers; layer-- > 0;) {
    const int in = layer == 0 ? input_channels : config.channels[layer - 1];
    const Convolution c =
        convolution(config, config.kernels[layer], trials, steps, in, config.channels[layer]);
    // Through the activation: the gradient of its output times its slope at the pre-activation.
    const std::vector<Scalar>& pre = pass.pre_activations[layer];
    for (std::int64_t i = 0; i < input_gradient.size(); ++i)
      input_gradient.data()[i] *= math::activate(config.activation, pre[std::size_t(i)]).slope;
    const std::string prefix = "encoder_conv" + std::to_string(layer + 1);
    input_gradient = convolve_backward(
        c, Matrix<Scalar>(ConstMatrixMap<Scalar>(pass.layer_inputs[layer].data(), rows, in)),
        parameters.data() + at(prefix + "_weight"), input_gradient,
        gradient.data() + at(prefix + "_weight"), gradient.data() + at(prefix + "_bias"),
        layer > 0);
  }
  return gradient;
}

template EncoderPass<double> encoder_forward(const EncoderConfig&, const std::vector<double>&,
                                             const std::vector<double>&, int, int, int, int);
template EncoderPass<float> encoder_forward(const EncoderConfig&, const std::vector<double>&,
                                            const std::vector<float>&, int, int, int, int);
template std::vector<double> encoder_backward(const EncoderConfig&, const std::vector<double>&,
                                              const EncoderPass<double>&,
                                              const std::vector<double>&,
                                              const std::vector<double>&);
template std::vector<double> encoder_backward(const EncoderConfig&, const std::vector<double>&,
                                              const EncoderPass<float>&,
                                              const std::vector<float>&,
                                              const std::vector<float>&);

}  // namespace lrsmc
