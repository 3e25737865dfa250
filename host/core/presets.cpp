#include "lrsmc/presets.hpp"

#include "lrsmc/errors.hpp"

namespace lrsmc {

const std::vector<Preset>& presets() {
  // eeg and spikes follow the paper's settings (method.md §5.2); small was measured on the demo's
  // teacher (bench/RESULTS.md, "Presets").
  static const std::vector<Preset> table = {
      {"eeg",
       "the EEG recipe of Pals et al. (2024): a long continuous recording of tens of channels, "
       "trained for hours",
       {{"rank", "3"},
        {"hidden", "512"},
        {"nonlinearity", "clipped_relu"},
        {"transition-noise", "full"},
        {"initial-noise", "full"},
        {"observation", "gaussian"},
        {"link", "identity"},
        {"initial-state", "trainable"},
        {"init-observation-std", "0.1"},
        {"particles", "10"},
        {"epochs", "1500"},
        {"batch-size", "10"},
        {"window", "50"},
        {"windows-per-epoch", "500"},
        {"optimizer", "radam"},
        {"lr", "1e-3"},
        {"lr-end", "1e-6"}}},
      {"spikes",
       "spike counts of tens to hundreds of neurons in trials (the paper's hippocampus and "
       "macaque recipe: Poisson read-out, softplus link, diagonal noise), keeping the best "
       "held-out model",
       {{"rank", "3"},
        {"hidden", "512"},
        {"nonlinearity", "clipped_relu"},
        {"transition-noise", "diag"},
        {"initial-noise", "diag"},
        {"observation", "poisson"},
        {"link", "softplus"},
        {"initial-state", "trainable"},
        {"init-initial-std", "0.1"},
        {"particles", "64"},
        {"epochs", "1000"},
        {"batch-size", "16"},
        {"optimizer", "radam"},
        {"lr", "1e-3"},
        {"lr-end", "1e-5"},
        {"held-out", "0.1"},
        {"eval-every", "10"},
        {"keep", "best"}}},
      {"small",
       "a few channels and trials, or a quick look at any data: a small network with Adam at a "
       "high learning rate and the automatic decay, which converges in about 2,500 optimizer "
       "steps",
       {{"rank", "2"},
        {"hidden", "20"},
        {"nonlinearity", "relu"},
        {"transition-noise", "full"},
        {"initial-noise", "full"},
        {"initial-state", "trainable"},
        {"init-observation-std", "0.3"},
        {"particles", "16"},
        {"epochs", "300"},
        {"batch-size", "10"},
        {"optimizer", "adam"},
        {"lr", "4e-2"},
        {"lr-end", "0"},
        {"held-out", "0.2"},
        {"eval-every", "10"},
        {"eval-particles", "64"},
        {"keep", "best"}}},
  };
  return table;
}

const Preset& find_preset(const std::string& name, const std::string& source) {
  std::string known;
  for (const Preset& preset : presets()) {
    if (preset.name == name) return preset;
    known += (known.empty() ? "" : ", ") + preset.name;
  }
  throw InvalidInput(detail::concat(source, ": unknown preset '", detail::excerpt(name),
                                    "'; expected one of ", known));
}

std::string describe_settings(const Preset& preset) {
  std::string text;
  for (const auto& [option, value] : preset.settings)
    text += (text.empty() ? "" : ", ") + option + " " + value;
  return text;
}

}  // namespace lrsmc
