// Recordings as the engine sees them: trials × time × channels (float64), with optional
// inputs, read from .npy/.npz in any of the layouts of design.md ("Data layout").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
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
  /// The trials whose observations this Dataset holds (ascending) when it holds only some: one
  /// process's share of a recording too large for every process to hold (load_dataset_trials).
  /// `observations` then holds these trials only, in this order; `inputs` always holds every
  /// trial. Unset: every trial.
  std::optional<std::vector<int>> held_trials;
  /// For trials split over the processes of a communicator: process p holds trials [shares[p],
  /// shares[p + 1]) (this one's are held_trials), and trials_batch gives each batch the matching
  /// SequenceBatch::shares, so that each process runs the trials it holds. Empty: not split.
  std::vector<int> shares;
  /// Whether an observation (of the trials held) is NaN.
  [[nodiscard]] bool has_missing() const;
  /// Whether every trial's observations are held.
  [[nodiscard]] bool whole() const { return !held_trials.has_value(); }
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

/// Picks the trials to read (ascending) from a recording's shape: a Dataset with its source,
/// layout and extents, and no values.
using TrialChooser = std::function<std::vector<int>(const Dataset& shape)>;

/// load_dataset reading only the observations of the trials `choose` picks (a layout with
/// trials): the others are streamed past and never held, so that each process of a fit holds
/// only its share of a recording larger than one process's memory. The result has the file's
/// trial count and the chosen trials as held_trials (all of them too); inputs are read whole (every
/// process needs every trial's inputs, which are few channels). Errors name trials by their index
/// in the file.
[[nodiscard]] Dataset load_dataset_trials(const std::string& path, DataLayout layout,
                                          const std::string& field, const std::string& inputs_path,
                                          const std::string& inputs_field, bool allow_missing,
                                          const TrialChooser& choose);

/// The trials `trials` (ascending, or any order for a whole dataset) as a dataset of their own,
/// numbered 0 … count − 1; of a dataset that holds some trials, it holds those among them.
[[nodiscard]] Dataset subset(const Dataset& data, const std::vector<int>& trials);

/// The SequenceBatch::shares of a batch of `trials` (ascending) of a dataset split over
/// processes (Dataset::shares); empty for one that is not.
[[nodiscard]] std::vector<int> batch_shares(const Dataset& data, const std::vector<int>& trials);

/// Trials [first, first + count) as a batch.
[[nodiscard]] SequenceBatch trials_batch(const Dataset& data, int first, int count);
/// Trials by index. Of a dataset split over processes (Dataset::shares) the trials must be
/// ascending, and the batch carries the matching SequenceBatch::shares and the observations of
/// the trials this process holds. Throws InvalidInput for a trial that is neither held nor
/// another process's.
[[nodiscard]] SequenceBatch trials_batch(const Dataset& data, const std::vector<int>& trials);
/// Windows of `length` steps of a continuous recording starting at the given steps.
[[nodiscard]] SequenceBatch windows_batch(const Dataset& data, const std::vector<int>& starts,
                                          int length);

}  // namespace lrsmc
