/* Uses lrsmc through the installed package from C only: a model and its parameter count. */
#include <stdio.h>

#include "lrsmc/lrsmc.h"

int main(void) {
  lrsmc_model* model = NULL;
  int64_t count = 0;
  if (lrsmc_model_initialise(2, 16, 4, "relu", 1, &model) != LRSMC_OK ||
      lrsmc_model_parameter_count(model, &count) != LRSMC_OK) {
    fprintf(stderr, "lrsmc: %s\n", lrsmc_last_error());
    lrsmc_model_free(model);
    return 1;
  }
  printf("lrsmc %s from C: model with %lld parameters\n", lrsmc_version(), (long long)count);
  lrsmc_model_free(model);
  return count > 0 ? 0 : 1;
}
