#include "robustness/readers.hpp"

#include "lrsmc/dataset.hpp"
#include "lrsmc/io.hpp"
#include "lrsmc/params.hpp"

namespace lrsmc::robustness {

const char* reader_name(Reader reader) {
  switch (reader) {
    case Reader::npy: return "read_npy";
    case Reader::npz: return "read_npz";
    case Reader::model: return "load_model";
    case Reader::dataset: return "load_dataset";
  }
  return "?";
}

void call_reader(Reader reader, const std::string& path, std::uint64_t variant) {
  static constexpr std::array<DataLayout, 4> layouts = {
      DataLayout::trials_time_channels, DataLayout::trials_channels_time,
      DataLayout::time_channels, DataLayout::channels_time};
  switch (reader) {
    case Reader::npy: static_cast<void>(io::read_npy(path)); return;
    case Reader::npz: static_cast<void>(io::read_npz(path)); return;
    case Reader::model: static_cast<void>(load_model(path)); return;
    case Reader::dataset: static_cast<void>(load_dataset(path, layouts[variant % 4])); return;
  }
}

}  // namespace lrsmc::robustness
