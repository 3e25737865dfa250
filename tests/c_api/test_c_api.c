/* Tests of the C API (include/lrsmc/lrsmc.h), written in C11 as an embedding program would be:
 * initialise, simulate, filter, fit, save/load, inputs, fixed points and the error paths.
 * Prints "N passed, M failed" and exits non-zero when any check fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lrsmc/lrsmc.h"

static int passed = 0;
static int failed = 0;

#define CHECK(condition)                                                                      \
  do {                                                                                        \
    if (condition) {                                                                          \
      ++passed;                                                                               \
    } else {                                                                                  \
      ++failed;                                                                               \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__, __LINE__,       \
              #condition, lrsmc_last_error());                                                \
    }                                                                                         \
  } while (0)

#define CHECK_OK(call) CHECK((call) == LRSMC_OK)

enum { RANK = 2, HIDDEN = 8, CHANNELS = 3, TRIALS = 4, STEPS = 20, PARTICLES = 16 };

static int all_finite(const double* values, size_t count) {
  for (size_t i = 0; i < count; ++i)
    if (!isfinite(values[i])) return 0;
  return 1;
}

static double mean(const double* values, size_t count) {
  double sum = 0.0;
  for (size_t i = 0; i < count; ++i) sum += values[i];
  return sum / (double)count;
}

int main(void) {
  const size_t obs_count = (size_t)TRIALS * STEPS * CHANNELS;
  const size_t latent_count = (size_t)TRIALS * STEPS * RANK;
  double* observations = malloc(obs_count * sizeof(double));
  double* latents = malloc(latent_count * sizeof(double));
  double* filtered = malloc(latent_count * sizeof(double));
  double elbo[TRIALS];
  double elbo_after[TRIALS];
  if (observations == NULL || latents == NULL || filtered == NULL) return 2;

  printf("lrsmc %s\n", lrsmc_version());
  CHECK(strcmp(lrsmc_last_error(), "") == 0);
  CHECK(strcmp(lrsmc_status_string(LRSMC_IO_ERROR), "LRSMC_IO_ERROR") == 0);

  /* Initialise a teacher and a student. */
  lrsmc_model* teacher = NULL;
  lrsmc_model* student = NULL;
  CHECK_OK(lrsmc_model_initialise(RANK, HIDDEN, CHANNELS, "relu", 11, &teacher));
  CHECK_OK(lrsmc_model_initialise(RANK, HIDDEN, CHANNELS, NULL, 12, &student));
  CHECK(teacher != NULL && student != NULL);
  if (teacher == NULL || student == NULL) {
    printf("%d passed, %d failed\n", passed, failed);
    return 1;
  }
  int rank = 0, hidden = 0, channels = 0;
  long long parameters = 0;
  int64_t count64 = 0;
  CHECK_OK(lrsmc_model_rank(teacher, &rank));
  CHECK_OK(lrsmc_model_hidden(teacher, &hidden));
  CHECK_OK(lrsmc_model_channels(teacher, &channels));
  CHECK_OK(lrsmc_model_parameter_count(teacher, &count64));
  parameters = (long long)count64;
  CHECK(rank == RANK && hidden == HIDDEN && channels == CHANNELS);
  CHECK(parameters > (long long)(2 * RANK * HIDDEN));

  /* Simulate. */
  CHECK_OK(lrsmc_sample(teacher, TRIALS, STEPS, 5, observations, latents));
  CHECK(all_finite(observations, obs_count));
  CHECK(all_finite(latents, latent_count));
  CHECK_OK(lrsmc_sample(teacher, TRIALS, STEPS, 5, observations, NULL));

  /* Filter with every proposal spelling. */
  CHECK_OK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "auto", 1,
                        elbo, filtered));
  CHECK(all_finite(elbo, TRIALS));
  CHECK(all_finite(filtered, latent_count));
  CHECK_OK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "bootstrap", 1,
                        elbo, NULL));
  CHECK(all_finite(elbo, TRIALS));
  CHECK_OK(lrsmc_filter(student, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "optimal", 1,
                        elbo, NULL));
  CHECK(all_finite(elbo, TRIALS));
  const double student_before = mean(elbo, TRIALS);

  /* Fit the student a few epochs: the ELBO stays finite and should not fall. */
  double final_elbo = NAN;
  CHECK_OK(lrsmc_fit(student, observations, TRIALS, STEPS, CHANNELS, 15, 2, PARTICLES, 0.003, 3,
                     &final_elbo));
  CHECK(isfinite(final_elbo));
  CHECK_OK(lrsmc_filter(student, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "optimal", 1,
                        elbo_after, NULL));
  const double student_after = mean(elbo_after, TRIALS);
  printf("student ELBO per step: before %.4f, after 15 epochs %.4f (last epoch %.4f)\n",
         student_before, student_after, final_elbo);
  CHECK(isfinite(student_after));
  CHECK(student_after > student_before);

  /* Save and load: same configuration, same filter results. */
  const char* path = "test_c_api_model.npz";
  CHECK_OK(lrsmc_model_save(student, path));
  lrsmc_model* loaded = NULL;
  CHECK_OK(lrsmc_model_load(path, &loaded));
  CHECK(loaded != NULL);
  if (loaded != NULL) {
    CHECK_OK(lrsmc_model_rank(loaded, &rank));
    CHECK(rank == RANK);
    double elbo_loaded[TRIALS];
    CHECK_OK(lrsmc_filter(loaded, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "optimal", 1,
                          elbo_loaded, NULL));
    int same = 1;
    for (int b = 0; b < TRIALS; ++b) same = same && elbo_loaded[b] == elbo_after[b];
    CHECK(same);
  }
  lrsmc_model_free(loaded);
  remove(path);

  /* An encoder: "auto" then filters with it, the fit trains it, and the file keeps it. */
  {
    const int kernels[] = {3, 1};
    const int encoder_channels[] = {5};
    lrsmc_model* with_encoder = NULL;
    CHECK_OK(lrsmc_model_initialise(RANK, HIDDEN, CHANNELS, "relu", 21, &with_encoder));
    int64_t plain_count = 0, encoder_count = 0;
    CHECK_OK(lrsmc_model_parameter_count(with_encoder, &plain_count));
    CHECK_OK(lrsmc_model_set_encoder(with_encoder, kernels, 2, encoder_channels, "leaky_relu",
                                     "windowed", NULL, 0.5, 4));
    CHECK_OK(lrsmc_model_parameter_count(with_encoder, &encoder_count));
    /* conv1 (5, D, 3) + bias 5, two heads (R, 5, 1) + R each */
    CHECK(encoder_count == plain_count + 5 * CHANNELS * 3 + 5 + 2 * (RANK * 5 + RANK));
    double elbo_auto[TRIALS], elbo_encoder[TRIALS];
    CHECK_OK(lrsmc_filter(with_encoder, observations, TRIALS, STEPS, CHANNELS, PARTICLES, NULL, 1,
                          elbo_auto, NULL));
    CHECK_OK(lrsmc_filter(with_encoder, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "encoder", 1,
                          elbo_encoder, NULL));
    int same = 1;
    for (int b = 0; b < TRIALS; ++b) same = same && elbo_auto[b] == elbo_encoder[b];
    CHECK(same && all_finite(elbo_auto, TRIALS));
    CHECK_OK(lrsmc_fit(with_encoder, observations, TRIALS, STEPS, CHANNELS, 2, 2, PARTICLES, 0.003, 3,
                       NULL));
    CHECK(lrsmc_filter(student, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "encoder", 1,
                       elbo, NULL) == LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(), "needs a model with an encoder") != NULL);
    CHECK(lrsmc_model_set_encoder(with_encoder, kernels, 2, NULL, "gelu", "sideways", NULL, 0.1, 1) ==
          LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(), "padding is not recognised; got 'sideways'") != NULL);
    CHECK(lrsmc_model_set_encoder(with_encoder, kernels, 0, NULL, NULL, NULL, NULL, 0.1, 1) ==
          LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(), "num_kernels is out of range; got 0") != NULL);
    lrsmc_model_free(with_encoder);
  }

  /* Another read-out: the units' rates one to one (channels = hidden), filtered with "auto"
   * (the bootstrap proposal); one that does not fit the model is refused. */
  {
    lrsmc_model* one_to_one = NULL;
    CHECK_OK(lrsmc_model_initialise(RANK, CHANNELS, CHANNELS, "tanh", 31, &one_to_one));
    int64_t before = 0, after = 0;
    CHECK_OK(lrsmc_model_parameter_count(one_to_one, &before));
    CHECK_OK(lrsmc_model_set_readout(one_to_one, "rates", 2));
    CHECK_OK(lrsmc_model_parameter_count(one_to_one, &after));
    CHECK(after == before - RANK * CHANNELS + CHANNELS); /* B (R, D) becomes gains (D) */
    double elbo_rates[TRIALS];
    CHECK_OK(lrsmc_filter(one_to_one, observations, TRIALS, STEPS, CHANNELS, PARTICLES, NULL, 1,
                          elbo_rates, NULL));
    CHECK(all_finite(elbo_rates, TRIALS));
    CHECK(lrsmc_filter(one_to_one, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "optimal", 1,
                       elbo_rates, NULL) == LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(), "got readout_from 'rates', expected 'z'") != NULL);
    CHECK(lrsmc_model_set_readout(teacher, "currents", 2) == LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(),
                 "so channels must equal hidden; got channels 3 and hidden 8") != NULL);
    CHECK(lrsmc_model_set_readout(one_to_one, NULL, 2) == LRSMC_INVALID_INPUT);
    lrsmc_model_free(one_to_one);
  }

  /* Inputs: a model given two input dimensions is sampled, filtered and fitted under them; the
   * inputs change the ELBO, a NULL where inputs are due and inputs for a model without any are
   * refused with messages that say so. */
  {
    enum { INPUTS = 2 };
    const size_t input_count = (size_t)TRIALS * STEPS * INPUTS;
    double* u = malloc(input_count * sizeof(double));
    double* still = calloc(input_count, sizeof(double));
    double* drawn = malloc(obs_count * sizeof(double));
    lrsmc_model* driven = NULL;
    CHECK(u != NULL && still != NULL && drawn != NULL);
    CHECK_OK(lrsmc_model_initialise(RANK, HIDDEN, CHANNELS, "tanh", 5, &driven));
    int64_t before = 0, after = 0;
    int inputs = -1;
    CHECK_OK(lrsmc_model_parameter_count(driven, &before));
    CHECK_OK(lrsmc_model_set_inputs(driven, INPUTS, 3));
    CHECK_OK(lrsmc_model_parameter_count(driven, &after));
    CHECK(after == before + HIDDEN * INPUTS); /* W_u (N, U) */
    CHECK_OK(lrsmc_model_inputs(driven, &inputs));
    CHECK(inputs == INPUTS);
    for (size_t i = 0; i < input_count; ++i) u[i] = 2.0 * sin(0.3 * (double)i);
    CHECK_OK(lrsmc_sample_with_inputs(driven, u, TRIALS, STEPS, 4, drawn, NULL));
    CHECK(all_finite(drawn, obs_count));
    double driven_elbo[TRIALS], still_elbo[TRIALS];
    CHECK_OK(lrsmc_filter_with_inputs(driven, drawn, u, TRIALS, STEPS, CHANNELS, PARTICLES, NULL,
                                      1, driven_elbo, NULL));
    CHECK_OK(lrsmc_filter_with_inputs(driven, drawn, still, TRIALS, STEPS, CHANNELS, PARTICLES,
                                      NULL, 1, still_elbo, NULL));
    CHECK(all_finite(driven_elbo, TRIALS));
    CHECK(mean(driven_elbo, TRIALS) != mean(still_elbo, TRIALS));
    CHECK(lrsmc_filter(driven, drawn, TRIALS, STEPS, CHANNELS, PARTICLES, NULL, 1, driven_elbo,
                       NULL) == LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(), "the model takes 2 inputs; inputs must not be NULL") != NULL);
    CHECK(lrsmc_sample(driven, TRIALS, STEPS, 4, drawn, NULL) == LRSMC_INVALID_INPUT);
    CHECK(lrsmc_filter_with_inputs(teacher, observations, u, TRIALS, STEPS, CHANNELS, PARTICLES,
                                   NULL, 1, driven_elbo, NULL) == LRSMC_INVALID_INPUT);
    CHECK(strstr(lrsmc_last_error(), "inputs given, but the model takes none") != NULL);
    /* The read-out from [v; z] needs inputs: reachable now. */
    CHECK_OK(lrsmc_model_set_readout(driven, "z_and_v", 6));
    CHECK_OK(lrsmc_filter_with_inputs(driven, drawn, u, TRIALS, STEPS, CHANNELS, PARTICLES, NULL,
                                      1, driven_elbo, NULL));
    CHECK(all_finite(driven_elbo, TRIALS));
    double driven_final = NAN;
    CHECK_OK(lrsmc_fit_with_inputs(driven, drawn, u, TRIALS, STEPS, CHANNELS, 2, 2, 8, 1e-2, 1,
                                   &driven_final));
    CHECK(isfinite(driven_final));
    CHECK(lrsmc_model_set_inputs(driven, -1, 0) == LRSMC_INVALID_INPUT);
    CHECK(lrsmc_model_set_inputs(driven, 0, 0) == LRSMC_INVALID_INPUT); /* z_and_v needs them */
    CHECK_OK(lrsmc_model_set_readout(driven, "z", 6));
    CHECK_OK(lrsmc_model_set_inputs(driven, 0, 0));
    CHECK_OK(lrsmc_model_parameter_count(driven, &after));
    CHECK(after == before);
    lrsmc_model_free(driven);
    free(u);
    free(still);
    free(drawn);
  }

  /* Fixed points: query the count, then fetch. */
  int count = -1;
  CHECK_OK(lrsmc_fixed_points(teacher, &count, NULL, 0));
  CHECK(count >= 1); /* z = 0 region or another: a relu map with decay < 1 has one */
  if (count >= 1) {
    double* points = malloc((size_t)count * RANK * sizeof(double));
    int again = -1;
    CHECK_OK(lrsmc_fixed_points(teacher, &again, points, count));
    CHECK(again == count);
    CHECK(points != NULL && all_finite(points, (size_t)count * RANK));
    free(points);
  }

  /* Error paths. */
  lrsmc_model* missing = (lrsmc_model*)&passed; /* must be reset to NULL on failure */
  const lrsmc_status status = lrsmc_model_load("/nonexistent/lrsmc_no_such_model.npz", &missing);
  CHECK(status == LRSMC_IO_ERROR || status == LRSMC_INVALID_INPUT);
  CHECK(missing == NULL);
  CHECK(strstr(lrsmc_last_error(), "lrsmc_no_such_model.npz") != NULL);

  CHECK(lrsmc_model_load("x.npz", NULL) == LRSMC_INVALID_INPUT);
  CHECK(strstr(lrsmc_last_error(), "model") != NULL);
  CHECK(lrsmc_filter(teacher, NULL, TRIALS, STEPS, CHANNELS, PARTICLES, "auto", 1, elbo, NULL) ==
        LRSMC_INVALID_INPUT);
  CHECK(strstr(lrsmc_last_error(), "observations") != NULL);
  CHECK(lrsmc_model_rank(NULL, &rank) == LRSMC_INVALID_INPUT);
  CHECK(strstr(lrsmc_last_error(), "model") != NULL);
  CHECK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS, 0, "auto", 1, elbo, NULL) ==
        LRSMC_INVALID_INPUT);
  CHECK(strstr(lrsmc_last_error(), "particle") != NULL);
  CHECK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS + 1, PARTICLES, "auto", 1,
                     elbo, NULL) == LRSMC_INVALID_INPUT);
  CHECK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "magic", 1, elbo,
                     NULL) == LRSMC_INVALID_INPUT);
  CHECK(strstr(lrsmc_last_error(), "magic") != NULL);
  CHECK(lrsmc_model_initialise(RANK, HIDDEN, CHANNELS, "sigmoid", 1, &missing) ==
        LRSMC_INVALID_INPUT);
  CHECK(missing == NULL);
  CHECK(lrsmc_model_initialise(0, HIDDEN, CHANNELS, "relu", 1, &missing) == LRSMC_INVALID_INPUT);
  CHECK(lrsmc_fit(student, observations, TRIALS, STEPS, CHANNELS, 0, 2, PARTICLES, 0.01, 1,
                  NULL) == LRSMC_INVALID_INPUT);
  CHECK(lrsmc_fixed_points(teacher, &count, NULL, 4) == LRSMC_INVALID_INPUT);
  CHECK(strstr(lrsmc_last_error(), "points") != NULL);
  observations[7] = NAN;
  CHECK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "auto", 1, elbo,
                     NULL) == LRSMC_INVALID_INPUT);
  CHECK(lrsmc_model_save(teacher, "/nonexistent-dir/lrsmc/model.npz") == LRSMC_IO_ERROR);

  /* A handle stays usable after failures. */
  observations[7] = 0.0;
  CHECK_OK(lrsmc_filter(teacher, observations, TRIALS, STEPS, CHANNELS, PARTICLES, "auto", 1, elbo,
                        NULL));
  lrsmc_model_free(NULL);

  lrsmc_model_free(teacher);
  lrsmc_model_free(student);
  free(observations);
  free(latents);
  free(filtered);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
