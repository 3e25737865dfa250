// Recordings as the engine sees them: trials × time × channels (float64), with optional
// inputs, read from .npy/.npz in any of the layouts of design.md ("Data layout").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrsmc/array.hpp"
#include "lrsmc/backend.hpp"

namespace lrsmc {

/// How the axes of an array on disk are ordered.
enum class DataLayout {
  trials_time_channels,  ///< (trials, time, channels): LFADS, NLB tools, most numpy code
  trials_channels_time,  ///< (trials, channels, time): the reference implementation
  time_channels,         ///< one long recording (time, channels)
  channels_time,         ///< one long recording (channels, time)
};
[[nodiscard]] std::string to_string(DataLayout layout);
/// Accepts "trials,time,channels", "trials,channels,time", "time,channels", "channels,time".
[[nodiscard]] DataLayout parse_data_layout(const std::string& text,
                                           const std::string& field = "layout");

struct Dataset {
  std::string source;  ///< file name, for messages
  int num_trials = 0, num_steps = 0, num_channels = 0, num_inputs = 0;
  std::vector<double> observations;  ///< (trials, steps, channels)
  std::vector<double> inputs;        ///< (trials, steps, inputs) or empty
  /// The layout the file was read in.
  DataLayout layout = DataLayout::trials_time_channels;
  /// NaN observations are missing values (SequenceBatch::allow_missing), as the loader was asked.
  bool allow_missing = false;
  /// Whether an observation is NaN.
  [[nodiscard]] bool has_missing() const;
  /// One long recording (a single trial, layout time,channels or channels,time) from which
  /// training draws random windows.
  [[nodiscard]] bool continuous() const {
    return layout == DataLayout::time_channels || layout == DataLayout::channels_time;
  }
};

/// How the data was read, for the header line of a command: "<source>: 10 trials × 50 steps ×
/// 64 channels (layout trials,time,channels)".
[[nodiscard]] std::string describe(const Dataset& data);

/// Readings that look like a mistake, each a sentence naming the file: non-negative integer
/// data (counts) with a Gaussian read-out, a time axis much shorter than the channel axis (the
/// axes probably swapped), one step per trial. Empty when nothing looks wrong.
[[nodiscard]] std::vector<std::string> data_warnings(const Dataset& data, Observation observation);

/// Throws InvalidInput when the data has not `channels` channels, naming the file, the layout
/// it was read in and, when one exists, the layout that would give `channels` channels.
void require_channels(const Dataset& data, int channels);

/// Builds a dataset from an array in `layout`; throws InvalidInput naming `source`, the shape
/// and the assumed layout when the rank is wrong, and when a value is infinite or NaN (NaN is
/// kept as a missing value with `allow_missing`).
[[nodiscard]] Dataset dataset_from_array(const Array& array, DataLayout layout,
                                         const std::string& source, bool allow_missing = false);

/// Reads observations from .npy, or from entry `field` of an .npz ("" picks the only entry,
/// or one called "observations" or "data"). Optional inputs the same way, same layout.
[[nodiscard]] Dataset load_dataset(const std::string& path, DataLayout layout,
                                   const std::string& field = "",
                                   const std::string& inputs_path = "",
                                   const std::string& inputs_field = "",
                                   bool allow_missing = false);

/// Trials [first, first + count) as a batch.
[[nodiscard]] SequenceBatch trials_batch(const Dataset& data, int first, int count);
/// Trials by index.
[[nodiscard]] SequenceBatch trials_batch(const Dataset& data, const std::vector<int>& trials);
/// Windows of `length` steps of a continuous recording starting at the given steps.
[[nodiscard]] SequenceBatch windows_batch(const Dataset& data, const std::vector<int>& starts,
                                          int length);

}  // namespace lrsmc
