// Internal: JSON from files (a model's config, a checkpoint's training state) parsed with bounds on
// its size and nesting, and its values read with their type and range checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "lrsmc/errors.hpp"

namespace lrsmc::detail {

/// Parses `text`, which `label` names in messages; refuses text longer than `max_bytes` or
/// nested deeper than `max_depth` (nlohmann's dump and comparisons recurse, so a deep document
/// would overflow the stack), and quotes no more than an excerpt of it.
inline nlohmann::json parse_bounded_json(const std::string& text, const std::string& label,
                                         std::size_t max_bytes, int max_depth) {
  LRSMC_REQUIRE(text.size() <= max_bytes, label, " is too long; got ", text.size(),
                " bytes, expected at most ", max_bytes);
  struct TooDeep {};
  try {
    return nlohmann::json::parse(
        text, [max_depth](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          if (depth > max_depth) throw TooDeep{};
          return true;
        });
  } catch (const TooDeep&) {
    throw InvalidInput(concat(label, " is nested too deeply; expected at most ", max_depth,
                              " levels of arrays or objects"));
  } catch (const nlohmann::json::exception& error) {
    throw InvalidInput(concat(label, " is not valid JSON (", excerpt(error.what(), 160), ")"));
  }
}

/// `value` (called `field`) as an integer in [minimum, maximum]; throws InvalidInput naming
/// `label` and `field` otherwise, before any conversion can wrap.
inline std::int64_t bounded_integer(const nlohmann::json& value, const std::string& label,
                                    const std::string& field, std::int64_t minimum,
                                    std::int64_t maximum) {
  LRSMC_REQUIRE(value.is_number_integer(), label, ": field '", field, "' must be an integer; got ",
                excerpt(value.dump()));
  bool in_range = false;
  if (value.is_number_unsigned()) {  // how nlohmann stores every non-negative integer it parses
    const auto number = value.get<std::uint64_t>();
    in_range = maximum >= 0 && number <= static_cast<std::uint64_t>(maximum) &&
               (minimum <= 0 || number >= static_cast<std::uint64_t>(minimum));
  } else {
    const auto number = value.get<std::int64_t>();
    in_range = number >= minimum && number <= maximum;
  }
  LRSMC_REQUIRE(in_range, label, ": field '", field, "' is out of range; got ",
                excerpt(value.dump()), ", expected ", minimum, " to ", maximum);
  return value.get<std::int64_t>();
}

}  // namespace lrsmc::detail
