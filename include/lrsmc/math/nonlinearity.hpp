// Unit nonlinearities φ(X; h) and their derivatives, method.md §1.2. The bias h is not added
// to X before the call: each nonlinearity uses it in its own way.
#pragma once

#include "lrsmc/config.hpp"
#include "lrsmc/math/common.hpp"

namespace lrsmc::math {

/// φ(X; h) together with ∂φ/∂X and ∂φ/∂h.
template <typename Value>
struct UnitResponse {
  Value value;
  Value slope;       ///< ∂φ/∂X
  Value bias_slope;  ///< ∂φ/∂h
};

/// φ(X; h) of a unit's current X (per particle, common.hpp) and its bias h.
template <typename Value, typename Scalar>
LRSMC_HD Value unit_value(Nonlinearity nonlinearity, Value current, Scalar bias) {
  switch (nonlinearity) {
    case Nonlinearity::relu: return max_of(current - bias, Value(0));
    case Nonlinearity::clipped_relu:  // relu(X + h) − relu(X), method.md §1.2
      return max_of(current + bias, Value(0)) - max_of(current, Value(0));
    case Nonlinearity::tanh: return tanh_of(current - bias);
    case Nonlinearity::identity: break;
  }
  return current - bias;
}

template <typename Value, typename Scalar>
LRSMC_HD UnitResponse<Value> unit_response(Nonlinearity nonlinearity, Value current,
                                           Scalar bias) {
  switch (nonlinearity) {
    case Nonlinearity::relu: {
      const auto active = current - bias > Value(0);
      return {choose(active, current - bias, Value(0)), choose(active, Value(1), Value(0)),
              choose(active, Value(-1), Value(0))};
    }
    case Nonlinearity::clipped_relu: {
      const auto upper = current + bias > Value(0);
      const auto lower = current > Value(0);
      const Value value = choose(upper, current + bias, Value(0)) - choose(lower, current, Value(0));
      return {value, choose(upper, Value(1), Value(0)) - choose(lower, Value(1), Value(0)),
              choose(upper, Value(1), Value(0))};
    }
    case Nonlinearity::tanh: {
      const Value value = tanh_of(current - bias);
      const Value slope = Value(1) - value * value;
      return {value, slope, -slope};
    }
    case Nonlinearity::identity: break;
  }
  return {current - bias, Value(1), Value(-1)};
}

}  // namespace lrsmc::math
