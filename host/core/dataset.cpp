// Loading recordings in the layouts of design.md and slicing them into batches.
#include "lrsmc/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/system_memory.hpp"
#include "lrsmc/errors.hpp"
#include "lrsmc/io.hpp"

namespace lrsmc {

std::string to_string(DataLayout layout) {
  switch (layout) {
    case DataLayout::trials_time_channels:
      return "trials,time,channels";
    case DataLayout::trials_channels_time:
      return "trials,channels,time";
    case DataLayout::time_channels:
      return "time,channels";
    case DataLayout::channels_time:
      break;
  }
  return "channels,time";
}

DataLayout parse_data_layout(const std::string& text, const std::string& field) {
  for (const DataLayout layout :
       {DataLayout::trials_time_channels, DataLayout::trials_channels_time,
        DataLayout::time_channels, DataLayout::channels_time})
    if (text == to_string(layout)) return layout;
  throw InvalidInput(detail::concat(field, " is not recognised; got '", text,
                                    "', expected one of trials,time,channels, "
                                    "trials,channels,time, time,channels, channels,time"));
}

bool Dataset::has_missing() const {
  return std::any_of(observations.begin(), observations.end(),
                     [](double value) { return std::isnan(value); });
}

namespace {

/// dataset_from_array, naming trial t as file_trials[t] when given (the trials read of a file).
Dataset from_array(const Array& array, DataLayout layout, const std::string& source,
                   bool allow_missing, const std::vector<int>* file_trials) {
  Dataset data;
  data.source = source;
  data.layout = layout;
  data.allow_missing = allow_missing;
  const int expected_rank = data.continuous() ? 2 : 3;
  // The shape cut short: a file may claim thousands of axes.
  LRSMC_REQUIRE(array.ndim() == expected_rank, source, ": array has ", array.ndim(),
                " dimension(s), shape ", detail::excerpt(array.shape_string(), 200), "; expected ",
                expected_rank, " for layout (", to_string(layout), ")",
                array.ndim() == 2 ? " (for one long recording use --layout time,channels)" : "",
                array.ndim() == 3 ? " (for trials use --layout trials,time,channels)" : "");
  for (const auto extent : array.shape)
    LRSMC_REQUIRE(extent >= 1 && extent <= (std::int64_t(1) << 31) - 1, source,
                  ": array has an empty or huge axis; got shape ", array.shape_string());
  std::int64_t trials = 1, steps = 0, channels = 0;
  switch (layout) {
    case DataLayout::trials_time_channels:
      trials = array.shape[0], steps = array.shape[1], channels = array.shape[2];
      break;
    case DataLayout::trials_channels_time:
      trials = array.shape[0], channels = array.shape[1], steps = array.shape[2];
      break;
    case DataLayout::time_channels:
      steps = array.shape[0], channels = array.shape[1];
      break;
    case DataLayout::channels_time:
      channels = array.shape[0], steps = array.shape[1];
      break;
  }
  data.num_trials = int(trials);
  data.num_steps = int(steps);
  data.num_channels = int(channels);
  data.observations.resize(std::size_t(trials * steps * channels));
  const bool channels_first =
      layout == DataLayout::trials_channels_time || layout == DataLayout::channels_time;
  for (std::int64_t trial = 0; trial < trials; ++trial)
    for (std::int64_t step = 0; step < steps; ++step)
      for (std::int64_t channel = 0; channel < channels; ++channel) {
        const std::int64_t from = channels_first ? (trial * channels + channel) * steps + step
                                                 : (trial * steps + step) * channels + channel;
        const double value = array.data[std::size_t(from)];
        LRSMC_REQUIRE(std::isfinite(value) || (allow_missing && std::isnan(value)), source,
                      ": value at trial ",
                      file_trials != nullptr ? (*file_trials)[std::size_t(trial)] : trial,
                      ", step ", step, ", channel ", channel, " is ",
                      std::isnan(value) ? "NaN"
                      : value > 0       ? "inf"
                                        : "-inf",
                      "; expected finite values (layout ", to_string(layout), ")",
                      std::isnan(value) ? "; NaN observations (not inputs) can be missing "
                                          "values when asked: --allow-missing, "
                                          "allow_missing=True"
                                        : "");
        data.observations[std::size_t((trial * steps + step) * channels + channel)] = value;
      }
  return data;
}

}  // namespace

Dataset dataset_from_array(const Array& array, DataLayout layout, const std::string& source,
                           bool allow_missing) {
  return from_array(array, layout, source, allow_missing, nullptr);
}

std::string describe(const Dataset& data) {
  return detail::concat(
      data.source, ": ", data.num_trials,
      data.continuous() ? " recording × " : (data.num_trials == 1 ? " trial × " : " trials × "),
      data.num_steps, " steps × ", data.num_channels, " channels (layout ", to_string(data.layout),
      ")");
}

namespace {

/// The layout that reads the same array with the time and channel axes exchanged.
DataLayout swapped(DataLayout layout) {
  switch (layout) {
    case DataLayout::trials_time_channels:
      return DataLayout::trials_channels_time;
    case DataLayout::trials_channels_time:
      return DataLayout::trials_time_channels;
    case DataLayout::time_channels:
      return DataLayout::channels_time;
    case DataLayout::channels_time:
      break;
  }
  return DataLayout::time_channels;
}

}  // namespace

std::vector<std::string> data_warnings(const Dataset& data, Observation observation) {
  std::vector<std::string> warnings;
  const std::string read_as =
      detail::concat(" (read as ", data.num_steps, data.num_steps == 1 ? " step × " : " steps × ",
                     data.num_channels, " channels, layout ", to_string(data.layout), ")");
  // Missing values (NaN) are left out of every reading below.
  if (observation == Observation::gaussian && !data.observations.empty() &&
      std::all_of(data.observations.begin(), data.observations.end(),
                  [](double x) { return std::isnan(x) || (x >= 0 && x == std::floor(x)); }))
    warnings.push_back(detail::concat(
        data.source,
        ": every value is a non-negative integer, as spike counts are, but the read-out is "
        "Gaussian; counts are fitted with --observation poisson"));
  if (observation == Observation::gaussian && data.num_channels > 0 && !data.observations.empty()) {
    // The typical channel's standard deviation: raw recordings (EEG in µV, LFP in mV, calcium
    // fluorescence) are orders of magnitude from the unit scale the initialisation assumes.
    const std::size_t channels = std::size_t(data.num_channels);
    const std::size_t rows = data.observations.size() / channels;
    std::vector<double> spread;  // of the channels with a value
    for (std::size_t channel = 0; channel < channels; ++channel) {
      double sum = 0, squares = 0, count = 0;
      for (std::size_t row = 0; row < rows; ++row) {
        const double value = data.observations[row * channels + channel];
        if (std::isnan(value)) continue;
        sum += value;
        count += 1;
      }
      if (count == 0) continue;
      const double mean = sum / count;
      for (std::size_t row = 0; row < rows; ++row) {
        const double value = data.observations[row * channels + channel];
        if (!std::isnan(value)) squares += (value - mean) * (value - mean);
      }
      spread.push_back(std::sqrt(squares / count));
    }
    const std::size_t middle = spread.size() / 2;
    std::nth_element(spread.begin(), spread.begin() + std::ptrdiff_t(middle), spread.end());
    const double typical = spread.empty() ? 1.0 : spread[middle];
    if (typical > 10 || (typical > 0 && typical < 0.01))
      warnings.push_back(detail::concat(
          data.source, ": the channels' typical standard deviation is ", typical,
          " (the median over channels); the Gaussian read-out starts with noise std "
          "--init-observation-std (0.1 by default) around latents of unit scale, so z-score each "
          "channel first (subtract its mean, divide by its standard deviation)"));
  }
  // A wide margin: recordings have many more steps than channels far more often than not.
  if (data.num_steps > 1 && std::int64_t(data.num_steps) * 4 <= data.num_channels)
    warnings.push_back(detail::concat(data.source, ": ", data.num_steps, " steps against ",
                                      data.num_channels, " channels", read_as,
                                      "; if the file holds channels before time, use --layout ",
                                      to_string(swapped(data.layout))));
  if (data.num_steps == 1)
    warnings.push_back(detail::concat(data.source, ": one step per trial", read_as,
                                      "; the model needs time series: check --layout"));
  return warnings;
}

void require_channels(const Dataset& data, int channels) {
  if (data.num_channels == channels) return;
  const std::string suggestion =
      data.num_steps == channels ? detail::concat("; --layout ", to_string(swapped(data.layout)),
                                                  " reads ", channels, " channels")
                                 : std::string();
  throw InvalidInput(detail::concat(data.source, ": channel count does not match the model; got ",
                                    data.num_channels, " (layout ", to_string(data.layout),
                                    "), expected ", channels, suggestion));
}

namespace {

/// The entry of `path` that holds the data: `field`, else the only entry, else one called
/// "observations" or "data". Only that entry is decompressed.
std::string data_entry(const std::string& path, const std::string& field) {
  const std::vector<std::string> names = io::list_npz(path);
  std::string listing;
  for (const std::string& name : names) listing += (listing.empty() ? "" : ", ") + name;
  if (!field.empty()) {
    LRSMC_REQUIRE(std::find(names.begin(), names.end(), field) != names.end(), path, ": entry '",
                  field, "' is missing; the archive holds ",
                  names.empty() ? std::string("no arrays") : listing);
    return field;
  }
  if (names.size() == 1) return names.front();
  for (const char* name : {"observations", "data"})
    if (std::find(names.begin(), names.end(), name) != names.end()) return name;
  throw InvalidInput(detail::concat(path, ": cannot tell which entry holds the data (", listing,
                                    "); name one with --field"));
}

/// The formats the engine reads, and the way to the others, for error messages.
constexpr const char* supported_formats =
    "the engine reads .npy and .npz; NWB, EDF/BDF and HDF5 recordings are converted with "
    "`python -m lrsmc.convert RECORDING OUT.npz` (README, \"Data formats\")";

/// The data entry of `path` (field as data_entry picks it), keeping the first-axis indices `rows`
/// picks when given.
Array read_entry(const std::string& path, const std::string& field,
                 const io::RowChooser& rows = nullptr) {
  for (const char* extension : {".nwb", ".edf", ".bdf", ".h5", ".hdf5", ".mat", ".csv", ".txt"})
    LRSMC_REQUIRE(!io::has_extension(path, extension), path, ": ", extension,
                  " files are not read directly; ", supported_formats);
  if (!io::has_extension(path, ".npz")) {
    LRSMC_REQUIRE(field.empty(), path, ": --field '", field,
                  "' given, but the file is not an .npz");
    try {
      return io::read_npy(path, rows);
    } catch (const InvalidInput& error) {
      // Not a .npy inside, under another name: say what is read.
      const bool not_npy = std::string(error.what()).find("not a .npy file") != std::string::npos;
      if (io::has_extension(path, ".npy") || !not_npy) throw;
      throw InvalidInput(detail::concat(error.what(), "; ", supported_formats));
    }
  }
  io::NpzSelection selection;
  selection.entries = {data_entry(path, field)};
  // The data, its copy as a dataset and the batches made from it must fit in memory.
  const double memory = detail::physical_memory_bytes();
  if (memory > 0) selection.max_values = std::size_t(memory / 24);
  selection.rows = rows;
  io::NpzContents contents = io::read_npz(path, selection);
  const auto found = contents.arrays.find(selection.entries.front());
  LRSMC_REQUIRE(found != contents.arrays.end(), path, ": entry '", selection.entries.front(),
                "' is text; expected a numeric array");
  return std::move(found->second);
}

}  // namespace

namespace {

/// Reads every trial's inputs (`path`, entry `field`) into `data`, in its layout; nothing without
/// a path.
void attach_inputs(Dataset& data, const std::string& path, const std::string& field) {
  if (path.empty()) return;
  const Dataset inputs = dataset_from_array(read_entry(path, field), data.layout, path);
  LRSMC_REQUIRE(inputs.num_trials == data.num_trials && inputs.num_steps == data.num_steps, path,
                ": inputs do not match the data; got ", inputs.num_trials, " trials × ",
                inputs.num_steps, " steps, expected ", data.num_trials, " × ", data.num_steps,
                " (layout ", to_string(data.layout), ")");
  data.num_inputs = inputs.num_channels;
  data.inputs = inputs.observations;
}

}  // namespace

Dataset load_dataset(const std::string& path, DataLayout layout, const std::string& field,
                     const std::string& inputs_path, const std::string& inputs_field,
                     bool allow_missing) {
  Dataset data = dataset_from_array(read_entry(path, field), layout, path, allow_missing);
  attach_inputs(data, inputs_path, inputs_field);
  return data;
}

Dataset load_dataset_trials(const std::string& path, DataLayout layout, const std::string& field,
                            const std::string& inputs_path, const std::string& inputs_field,
                            bool allow_missing, const TrialChooser& choose) {
  LRSMC_REQUIRE(
      layout == DataLayout::trials_time_channels || layout == DataLayout::trials_channels_time,
      path, ": only recordings of trials are read in shares; got layout ", to_string(layout));
  int file_trials = 0;
  std::vector<int> chosen;
  Dataset extents;
  const Array array = read_entry(path, field, [&](const std::vector<std::int64_t>& shape) {
    const auto fits = [](std::int64_t extent) {
      return extent >= 1 && extent <= (std::int64_t(1) << 31) - 1;
    };
    LRSMC_REQUIRE(shape.size() == 3 && fits(shape[0]) && fits(shape[1]) && fits(shape[2]), path,
                  ": array has ", shape.size(),
                  " dimension(s) or an empty or huge axis; expected 3 for layout (",
                  to_string(layout), ")");
    file_trials = int(shape[0]);
    extents.source = path;
    extents.layout = layout;
    extents.allow_missing = allow_missing;
    const bool channels_first = layout == DataLayout::trials_channels_time;
    extents.num_trials = file_trials;
    extents.num_steps = int(shape[channels_first ? 2 : 1]);
    extents.num_channels = int(shape[channels_first ? 1 : 2]);
    chosen = choose(extents);
    return std::vector<std::int64_t>(chosen.begin(), chosen.end());
  });
  Dataset data = extents;  // no trial of the file chosen: its shape alone
  if (!chosen.empty()) data = from_array(array, layout, path, allow_missing, &chosen);
  data.num_trials = file_trials;
  data.held_trials = chosen;
  attach_inputs(data, inputs_path, inputs_field);
  return data;
}

namespace {

/// Where trial `trial`'s observations lie in data.observations, or −1 when it is not held.
std::int64_t held_row(const Dataset& data, int trial) {
  if (data.whole()) return trial;
  const std::vector<int>& held = *data.held_trials;
  const auto found = std::lower_bound(held.begin(), held.end(), trial);
  if (found == held.end() || *found != trial) return -1;
  return found - held.begin();
}

}  // namespace

Dataset subset(const Dataset& data, const std::vector<int>& trials) {
  Dataset part = data;
  part.num_trials = int(trials.size());
  part.observations.clear();
  part.inputs.clear();
  part.held_trials.reset();
  if (!data.whole()) part.held_trials.emplace();
  part.shares.clear();
  const std::size_t observation_size = std::size_t(data.num_steps) * data.num_channels;
  const std::size_t input_size = std::size_t(data.num_steps) * data.num_inputs;
  for (std::size_t index = 0; index < trials.size(); ++index) {
    const int trial = trials[index];
    LRSMC_ASSERT(trial >= 0 && trial < data.num_trials);
    LRSMC_ASSERT(data.whole() || index == 0 || trial > trials[index - 1]);
    const std::int64_t row = held_row(data, trial);
    if (row >= 0) {
      if (!data.whole()) part.held_trials->push_back(int(index));
      part.observations.insert(
          part.observations.end(),
          data.observations.begin() + std::ptrdiff_t(std::size_t(row) * observation_size),
          data.observations.begin() + std::ptrdiff_t(std::size_t(row + 1) * observation_size));
    }
    if (input_size > 0)
      part.inputs.insert(part.inputs.end(),
                         data.inputs.begin() + std::ptrdiff_t(std::size_t(trial) * input_size),
                         data.inputs.begin() + std::ptrdiff_t(std::size_t(trial + 1) * input_size));
  }
  return part;
}

std::vector<int> batch_shares(const Dataset& data, const std::vector<int>& trials) {
  if (data.shares.empty()) return {};
  // Each process's trials are consecutive in an ascending batch: its share of the batch.
  LRSMC_REQUIRE(std::is_sorted(trials.begin(), trials.end()), data.source,
                ": a batch of trials split over processes must list them in ascending order");
  std::vector<int> bounds;
  bounds.reserve(data.shares.size());
  for (const int bound : data.shares)
    bounds.push_back(int(std::lower_bound(trials.begin(), trials.end(), bound) - trials.begin()));
  return bounds;
}

SequenceBatch trials_batch(const Dataset& data, const std::vector<int>& trials) {
  SequenceBatch batch;
  batch.num_trials = int(trials.size());
  batch.num_steps = data.num_steps;
  batch.num_channels = data.num_channels;
  batch.num_inputs = data.num_inputs;
  batch.allow_missing = data.allow_missing;
  const std::size_t observation_size = std::size_t(data.num_steps) * data.num_channels;
  const std::size_t input_size = std::size_t(data.num_steps) * data.num_inputs;
  batch.shares = batch_shares(data, trials);
  for (const int trial : trials) {
    LRSMC_ASSERT(trial >= 0 && trial < data.num_trials);
    const std::int64_t row = held_row(data, trial);
    LRSMC_REQUIRE(row >= 0 || !data.shares.empty(), data.source, ": trial ", trial,
                  " was not read (this dataset holds ", data.held_trials->size(), " of its ",
                  data.num_trials, " trials)");
    if (row >= 0) {  // (another process's trial: that process holds and runs it)
      batch.observations.insert(
          batch.observations.end(),
          data.observations.begin() + std::ptrdiff_t(std::size_t(row) * observation_size),
          data.observations.begin() + std::ptrdiff_t(std::size_t(row + 1) * observation_size));
    }
    if (input_size > 0)
      batch.inputs.insert(batch.inputs.end(),
                          data.inputs.begin() + std::ptrdiff_t(trial * input_size),
                          data.inputs.begin() + std::ptrdiff_t((trial + 1) * input_size));
  }
  return batch;
}

SequenceBatch trials_batch(const Dataset& data, int first, int count) {
  std::vector<int> trials(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) trials[std::size_t(i)] = first + i;
  return trials_batch(data, trials);
}

SequenceBatch windows_batch(const Dataset& data, const std::vector<int>& starts, int length) {
  LRSMC_REQUIRE(length >= 1 && length <= data.num_steps, data.source, ": window of ", length,
                " steps does not fit the recording; got ", data.num_steps,
                " steps, expected a window of 1 to ", data.num_steps);
  SequenceBatch batch;
  batch.num_trials = int(starts.size());
  batch.num_steps = length;
  batch.num_channels = data.num_channels;
  batch.num_inputs = data.num_inputs;
  batch.allow_missing = data.allow_missing;
  LRSMC_REQUIRE(data.whole(), data.source,
                ": windows are cut from a whole recording; this dataset holds only some trials");
  for (const int start : starts) {
    LRSMC_ASSERT(start >= 0 && start + length <= data.num_steps);
    batch.observations.insert(
        batch.observations.end(),
        data.observations.begin() + std::ptrdiff_t(std::size_t(start) * data.num_channels),
        data.observations.begin() +
            std::ptrdiff_t(std::size_t(start + length) * data.num_channels));
    if (data.num_inputs > 0)
      batch.inputs.insert(
          batch.inputs.end(),
          data.inputs.begin() + std::ptrdiff_t(std::size_t(start) * data.num_inputs),
          data.inputs.begin() + std::ptrdiff_t(std::size_t(start + length) * data.num_inputs));
  }
  return batch;
}

}  // namespace lrsmc
