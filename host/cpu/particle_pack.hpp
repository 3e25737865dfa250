// A pack of particles in SIMD lanes for the CPU's packed engine: `pack_width` float32 values
// (one per particle) that the shared per-particle maths of include/lrsmc/math/ takes as its
// Value type, so that the packed engine runs the same functions as the reference and the
// kernels, on pack_width particles at once. Arithmetic is lane by lane in IEEE float32 (GCC
// vector extensions, which compile to AVX-512, AVX2 or SSE as the target allows); exp, log,
// log1p and tanh are Eigen's vectorised float implementations (a few ulp from libm's).
// Gradient terms are widened to one float64 per lane (PackTotal) and summed over lanes, in lane
// order, only when a trial's accumulators are finished.
#pragma once

#include <Eigen/Core>
#include <cstring>

#include "lrsmc/math/common.hpp"

namespace lrsmc::cpu {

/// Particles per pack: one 512-bit register of float32.
constexpr int pack_width = 16;

using FloatLanes = float __attribute__((vector_size(pack_width * sizeof(float))));
/// Half a pack in float64 (lanes 0–7 or 8–15): one 512-bit register, so that widening and
/// accumulating stay in registers.
using DoubleHalf = double __attribute__((vector_size(pack_width / 2 * sizeof(double))));
using MaskLanes = int __attribute__((vector_size(pack_width * sizeof(int))));
using EigenLanes = Eigen::Array<float, pack_width, 1>;

/// A lane-by-lane comparison's outcome (all bits set where true).
struct PackMask {
  MaskLanes lanes;
};

/// float64 accumulators, one per lane.
struct PackTotal {
  DoubleHalf low, high;  // lanes 0–7, 8–15
  PackTotal() : low(DoubleHalf{}), high(DoubleHalf{}) {}
  explicit PackTotal(double value) : low(DoubleHalf{} + value), high(DoubleHalf{} + value) {}
  PackTotal& operator+=(const PackTotal& other) {
    low += other.low;
    high += other.high;
    return *this;
  }
  PackTotal& operator-=(const PackTotal& other) {
    low -= other.low;
    high -= other.high;
    return *this;
  }
  [[nodiscard]] double lane(int j) const {
    return j < pack_width / 2 ? low[j] : high[j - pack_width / 2];
  }
};

struct Pack {
  FloatLanes lanes;
  Pack() : lanes(FloatLanes{}) {}
  /// Every lane `value` (implicit, so that a model parameter meets a pack as in the scalar maths).
  Pack(float value) : lanes(FloatLanes{} + value) {}  // NOLINT(google-explicit-constructor)
  explicit Pack(FloatLanes values) : lanes(values) {}

  [[nodiscard]] float lane(int j) const { return lanes[j]; }
  void set_lane(int j, float value) { lanes[j] = value; }

  Pack& operator+=(const Pack& other) {
    lanes += other.lanes;
    return *this;
  }
  Pack& operator-=(const Pack& other) {
    lanes -= other.lanes;
    return *this;
  }

  friend Pack operator+(const Pack& a, const Pack& b) { return Pack(a.lanes + b.lanes); }
  friend Pack operator-(const Pack& a, const Pack& b) { return Pack(a.lanes - b.lanes); }
  friend Pack operator*(const Pack& a, const Pack& b) { return Pack(a.lanes * b.lanes); }
  friend Pack operator/(const Pack& a, const Pack& b) { return Pack(a.lanes / b.lanes); }
  friend Pack operator-(const Pack& a) { return Pack(-a.lanes); }
  friend PackMask operator>(const Pack& a, const Pack& b) { return {a.lanes > b.lanes}; }

  // The overloads the shared maths calls unqualified (include/lrsmc/math/common.hpp).
  friend Pack choose(const PackMask& condition, const Pack& yes, const Pack& no) {
    return Pack(condition.lanes ? yes.lanes : no.lanes);
  }
  friend Pack max_of(const Pack& a, const Pack& b) {
    return Pack(a.lanes > b.lanes ? a.lanes : b.lanes);
  }
  friend bool is_zero(const Pack& x) {
    const MaskLanes nonzero = x.lanes != FloatLanes{};
    unsigned long long words[sizeof nonzero / sizeof(unsigned long long)];
    std::memcpy(words, &nonzero, sizeof nonzero);
    unsigned long long any = 0;
    for (const unsigned long long word : words) any |= word;
    return any == 0;
  }
  friend PackTotal widen(const Pack& x) {
    using FloatHalf = float __attribute__((vector_size(pack_width / 2 * sizeof(float))));
    const FloatHalf low = __builtin_shufflevector(x.lanes, x.lanes, 0, 1, 2, 3, 4, 5, 6, 7);
    const FloatHalf high = __builtin_shufflevector(x.lanes, x.lanes, 8, 9, 10, 11, 12, 13, 14, 15);
    PackTotal total;
    total.low = __builtin_convertvector(low, DoubleHalf);
    total.high = __builtin_convertvector(high, DoubleHalf);
    return total;
  }
  /// A float32 partial sum of a few blocks (the packed engine widens it every few blocks).
  friend void accumulate(Pack& total, const Pack& term) { total += term; }
  friend Pack exp_of(const Pack& x) {
    return apply(x, [](const auto& a) { return a.exp(); });
  }
  friend Pack log_of(const Pack& x) {
    return apply(x, [](const auto& a) { return a.log(); });
  }
  friend Pack log1p_of(const Pack& x) {
    return apply(x, [](const auto& a) { return a.log1p(); });
  }
  friend Pack tanh_of(const Pack& x) {
    return apply(x, [](const auto& a) { return a.tanh(); });
  }

 private:
  /// An Eigen array function of the lanes.
  template <typename Function>
  static Pack apply(const Pack& x, const Function& function) {
    EigenLanes in, out;
    std::memcpy(in.data(), &x.lanes, sizeof x.lanes);
    out = function(in);
    Pack result;
    std::memcpy(&result.lanes, out.data(), sizeof result.lanes);
    return result;
  }
};

/// The lanes of a float64 accumulator summed in lane order (particle order within the pack).
inline double lane_sum(const PackTotal& total) {
  double sum = 0.0;
  for (int j = 0; j < pack_width; ++j) sum += total.lane(j);
  return sum;
}
inline double lane_sum(double total) { return total; }

/// The lanes of a pack summed in float32, in lane order.
inline float lane_sum(const Pack& value) {
  float sum = 0.0f;
  for (int j = 0; j < pack_width; ++j) sum += value.lanes[j];
  return sum;
}
inline float lane_sum(float value) { return value; }

/// Adds a float64 number that belongs to no particle (a once-per-step term) to an accumulator.
inline void add_scalar(PackTotal& total, double value) { total.low[0] += value; }
inline void add_scalar(double& total, double value) { total += value; }

/// Lanes of a Value type: 1 for a plain number, pack_width for a pack.
template <typename Value>
constexpr int lanes_of = 1;
template <>
constexpr int lanes_of<Pack> = pack_width;

template <typename Scalar>
Scalar lane_of(Scalar value, int /*lane*/) {
  return value;
}
inline float lane_of(const Pack& value, int lane) { return value.lane(lane); }
template <typename Scalar>
void set_lane(Scalar& value, int /*lane*/, Scalar lane_value) {
  value = lane_value;
}
inline void set_lane(Pack& value, int lane, float lane_value) { value.set_lane(lane, lane_value); }

}  // namespace lrsmc::cpu

template <>
struct lrsmc::math::LaneOf<lrsmc::cpu::Pack> {
  using type = float;
};
