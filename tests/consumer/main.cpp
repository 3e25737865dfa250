// Uses lrsmc through the installed package: the C++ API and the C API from one program.
#include <cstdio>

#include "lrsmc/lrsmc.h"
#include "lrsmc/params.hpp"

int main() {
  lrsmc::ModelConfig config;
  config.rank = 2;
  config.num_hidden = 16;
  config.num_channels = 4;
  const lrsmc::Model model = lrsmc::Model::initialise(config, 1);
  std::printf("lrsmc %s: model with %zu parameters\n", lrsmc_version(), model.parameters.size());

  lrsmc_model* handle = nullptr;
  if (lrsmc_model_initialise(2, 16, 4, "relu", 1, &handle) != LRSMC_OK) {
    std::fprintf(stderr, "lrsmc_model_initialise failed: %s\n", lrsmc_last_error());
    return 1;
  }
  lrsmc_model_free(handle);
  return model.parameters.empty() ? 1 : 0;
}
