// A small owning n-dimensional array (row-major, float64) used to pass data across the public
// API without exposing Eigen or device types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lrsmc {

/// Row-major (C order) array of doubles with an explicit shape.
struct Array {
  std::vector<std::int64_t> shape;
  std::vector<double> data;

  Array() = default;
  Array(std::vector<std::int64_t> shape_in, std::vector<double> data_in)
      : shape(std::move(shape_in)), data(std::move(data_in)) {}
  explicit Array(std::vector<std::int64_t> shape_in) : shape(std::move(shape_in)) {
    data.assign(static_cast<std::size_t>(element_count(shape)), 0.0);
  }

  [[nodiscard]] static std::int64_t element_count(const std::vector<std::int64_t>& s) {
    std::int64_t count = 1;
    for (const auto extent : s) count *= extent;
    return count;
  }
  [[nodiscard]] std::int64_t size() const { return element_count(shape); }
  [[nodiscard]] int ndim() const { return static_cast<int>(shape.size()); }
  /// "(a, b, c)" for messages.
  [[nodiscard]] std::string shape_string() const {
    std::string text = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
      text += std::to_string(shape[i]);
      if (i + 1 < shape.size() || shape.size() == 1) text += ", ";
    }
    if (shape.size() == 1) text.resize(text.size() - 1);
    return text + ")";
  }
};

}  // namespace lrsmc
