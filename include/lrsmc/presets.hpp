// Named starting recipes for `lrsmc fit` and `LowRankRNN(preset=...)`: each sets a group of
// options (by their command-line names) that work together for one kind of recording. Options
// the user gives explicitly win over the preset's.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lrsmc {

struct Preset {
  std::string name;
  std::string purpose;  ///< one line: what data and budget the recipe is for
  /// (option, value) in the command line's spelling, without the leading "--".
  std::vector<std::pair<std::string, std::string>> settings;
};

/// Every preset, in the order the help lists them.
[[nodiscard]] const std::vector<Preset>& presets();

/// The preset called `name`; throws InvalidInput naming `source`, the value and the known names.
[[nodiscard]] const Preset& find_preset(const std::string& name,
                                        const std::string& source = "preset");

/// "option value, option value, ..." for the progress header and the help.
[[nodiscard]] std::string describe_settings(const Preset& preset);

}  // namespace lrsmc
