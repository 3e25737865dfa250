// Unit nonlinearities φ(X; h) and their derivatives, method.md §1.2. The bias h is not added
// to X before the call: each nonlinearity uses it in its own way.
#pragma once

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// φ(X; h) together with ∂φ/∂X and ∂φ/∂h.
template <typename Scalar>
struct UnitResponse {
  Scalar value;
  Scalar slope;      ///< ∂φ/∂X
  Scalar bias_slope; ///< ∂φ/∂h
};

template <typename Scalar>
LRSMC_HD Scalar unit_value(Nonlinearity nonlinearity, Scalar current, Scalar bias) {
  switch (nonlinearity) {
    case Nonlinearity::relu: return max_of(current - bias, Scalar(0));
    case Nonlinearity::clipped_relu:  // relu(X + h) − relu(X), method.md §1.2
      return max_of(current + bias, Scalar(0)) - max_of(current, Scalar(0));
    case Nonlinearity::tanh: return std::tanh(current - bias);
    case Nonlinearity::identity: break;
  }
  return current - bias;
}

template <typename Scalar>
LRSMC_HD UnitResponse<Scalar> unit_response(Nonlinearity nonlinearity, Scalar current,
                                            Scalar bias) {
  switch (nonlinearity) {
    case Nonlinearity::relu: {
      const bool active = current - bias > Scalar(0);
      return {active ? current - bias : Scalar(0), active ? Scalar(1) : Scalar(0),
              active ? Scalar(-1) : Scalar(0)};
    }
    case Nonlinearity::clipped_relu: {
      const bool upper = current + bias > Scalar(0);
      const bool lower = current > Scalar(0);
      const Scalar value = (upper ? current + bias : Scalar(0)) - (lower ? current : Scalar(0));
      return {value, Scalar(upper ? 1 : 0) - Scalar(lower ? 1 : 0), upper ? Scalar(1) : Scalar(0)};
    }
    case Nonlinearity::tanh: {
      const Scalar value = std::tanh(current - bias);
      const Scalar slope = Scalar(1) - value * value;
      return {value, slope, -slope};
    }
    case Nonlinearity::identity: break;
  }
  return {current - bias, Scalar(1), Scalar(-1)};
}

}  // namespace lrsmc::math
