/* The C API of lrsmc: stochastic low-rank RNNs fitted by variational sequential Monte Carlo.
 *
 * Pure C (C99 and later, and C++): opaque handles, plain arrays, no C++ types. Every function
 * returns an lrsmc_status; on failure lrsmc_last_error() gives a message of the form
 * "<source>: <field> <problem>; got <value>, expected <constraint>". No function aborts, exits
 * or lets an exception escape, and a model handle stays valid after a failed call.
 *
 * Arrays are row-major (C order) float64:
 *   observations   (trials, steps, channels)
 *   latents        (trials, steps, rank)
 *   filtered_mean  (trials, steps, rank)
 *   inputs         (trials, steps, inputs)
 *   points         (count, rank)
 * All computations run on the CPU backend. Handles may be used from several threads as long
 * as no two threads use the same handle at once where one of them modifies it (lrsmc_fit).
 */
#ifndef LRSMC_LRSMC_H
#define LRSMC_LRSMC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Result of every call. */
typedef enum lrsmc_status {
  LRSMC_OK = 0,
  LRSMC_INVALID_INPUT = 1,   /**< a bad argument, shape, value or file content */
  LRSMC_IO_ERROR = 2,        /**< a file could not be opened, read, written or renamed */
  LRSMC_OUT_OF_MEMORY = 3,   /**< the problem does not fit in memory */
  LRSMC_CUDA_ERROR = 4,      /**< a CUDA call failed */
  LRSMC_NUMERICAL_ERROR = 5, /**< the objective or its gradient became NaN or infinite */
  LRSMC_ERROR = 6            /**< anything else (an internal error) */
} lrsmc_status;

/** A model: its configuration and parameters. Opaque; free with lrsmc_model_free. */
typedef struct lrsmc_model lrsmc_model;

/** Message of the last failed call on this thread ("" if none has failed). The pointer stays
 *  valid until the next failing lrsmc call on the same thread. Never NULL. */
const char* lrsmc_last_error(void);

/** Name of a status, e.g. "LRSMC_IO_ERROR". Never NULL. */
const char* lrsmc_status_string(lrsmc_status status);

/** Version of the library, e.g. "0.1.0". Never NULL. */
const char* lrsmc_version(void);

/* --- models ---------------------------------------------------------------------------- */

/** A new model with Gaussian observations, identity read-out, full noise covariances and a
 *  trainable initial state, initialised reproducibly from `seed` (method.md §1.9).
 *  nonlinearity: "relu", "clipped_relu", "tanh" or "identity" (NULL: "clipped_relu"). */
lrsmc_status lrsmc_model_initialise(int rank, int hidden, int channels, const char* nonlinearity,
                                    uint64_t seed, lrsmc_model** model);

/** Reads a model file (.npz written by lrsmc_model_save, the CLI or numpy). */
lrsmc_status lrsmc_model_load(const char* path, lrsmc_model** model);

/** Writes a model file atomically (temporary file, then rename). */
lrsmc_status lrsmc_model_save(const lrsmc_model* model, const char* path);

/** Frees a model; NULL is allowed. */
void lrsmc_model_free(lrsmc_model* model);

/** Gives `model` a freshly initialised convolutional encoder (replacing any it had; the other
 *  parameters are kept), so that lrsmc_filter and lrsmc_fit with proposal "auto" or "encoder"
 *  use the encoder proposal. kernels: `num_kernels` kernel sizes, the last one the heads'
 *  (e.g. {21, 11, 1}); channels: the num_kernels − 1 channel counts before the heads (NULL: 64
 *  each). activation "gelu" or "leaky_relu", padding "causal", "acausal" or "windowed",
 *  padding_mode "zeros", "reflect", "replicate" or "circular" (NULL: the first of each);
 *  init_scale: the encoder's initial standard deviation (e.g. 0.1); seed: its initialisation. */
lrsmc_status lrsmc_model_set_encoder(lrsmc_model* model, const int* kernels, int num_kernels,
                                     const int* channels, const char* activation,
                                     const char* padding, const char* padding_mode,
                                     double init_scale, uint64_t seed);

/** Gives `model` a freshly initialised read-out of another kind (method.md §1.7; the other
 *  parameters are kept): readout_from "z" (η = Bᵀz + b), "z_and_v" (inputs and z; needs a model
 *  with inputs), "currents" or "rates" (each unit one to one with a gain and a bias; needs
 *  channels = hidden). seed: the read-out's initialisation. With a read-out other than "z",
 *  proposal "auto" means the bootstrap proposal (or the model's encoder). */
lrsmc_status lrsmc_model_set_readout(lrsmc_model* model, const char* readout_from, uint64_t seed);

/** Gives `model` `inputs` input dimensions (0 removes them) with freshly initialised input
 *  weights W_u (and, reading out from [v; z] with another input count, read-out weights),
 *  keeping every other parameter. The inputs v_t then enter the units' currents m z + W_u v_t − h (method.md §1.4);
 *  pass them to the *_with_inputs calls. seed: the new weights' initialisation. */
lrsmc_status lrsmc_model_set_inputs(lrsmc_model* model, int inputs, uint64_t seed);

/** Latent dimension R, hidden units N, observed channels D, input dimensions, number of
 *  parameters. */
lrsmc_status lrsmc_model_rank(const lrsmc_model* model, int* rank);
lrsmc_status lrsmc_model_hidden(const lrsmc_model* model, int* hidden);
lrsmc_status lrsmc_model_channels(const lrsmc_model* model, int* channels);
lrsmc_status lrsmc_model_inputs(const lrsmc_model* model, int* inputs);
lrsmc_status lrsmc_model_parameter_count(const lrsmc_model* model, int64_t* count);

/* --- inference ------------------------------------------------------------------------- */

/** Runs the particle filter on `observations` (trials, steps, channels).
 *  proposal: "auto" (the model's encoder when it has one, else optimal for Gaussian identity
 *  read-outs, else bootstrap), "optimal", "bootstrap" or "encoder"; NULL means "auto". Resampling is systematic after every step.
 *  elbo_per_trial: output, `trials` values (the per-trial log-evidence per time step).
 *  filtered_mean: output (trials, steps, rank), or NULL when not wanted. */
lrsmc_status lrsmc_filter(const lrsmc_model* model, const double* observations, int trials,
                          int steps, int channels, int particles, const char* proposal,
                          uint64_t seed, double* elbo_per_trial, double* filtered_mean);
/** lrsmc_filter for a model with inputs: `inputs` (trials, steps, inputs) of the model's input
 *  dimension (NULL only for a model without inputs, where it is lrsmc_filter). */
lrsmc_status lrsmc_filter_with_inputs(const lrsmc_model* model, const double* observations,
                                      const double* inputs, int trials, int steps, int channels,
                                      int particles, const char* proposal, uint64_t seed,
                                      double* elbo_per_trial, double* filtered_mean);

/** Fits `model` in place to `observations` (trials, steps, channels) by stochastic gradient
 *  ascent on the SMC ELBO: RAdam, `epochs` passes over the trials in batches of `batch_size`,
 *  `particles` particles and the proposal "auto" (a model's encoder is trained with it), the
 *  learning rate decaying exponentially from `learning_rate` to
 *  learning_rate/1000 at the last epoch, no held-out split. final_elbo (may be NULL) receives
 *  the mean training ELBO of the last epoch. If the ELBO becomes NaN or infinite, the model
 *  keeps the last good parameters and LRSMC_NUMERICAL_ERROR is returned. */
lrsmc_status lrsmc_fit(lrsmc_model* model, const double* observations, int trials, int steps,
                       int channels, int epochs, int batch_size, int particles,
                       double learning_rate, uint64_t seed, double* final_elbo);
/** lrsmc_fit for a model with inputs (trials, steps, inputs); NULL only without inputs. */
lrsmc_status lrsmc_fit_with_inputs(lrsmc_model* model, const double* observations,
                                   const double* inputs, int trials, int steps, int channels,
                                   int epochs, int batch_size, int particles,
                                   double learning_rate, uint64_t seed, double* final_elbo);

/** Draws from the generative model (prior initial state).
 *  observations: output (trials, steps, channels); latents: output (trials, steps, rank) or
 *  NULL. A model with inputs is sampled with lrsmc_sample_with_inputs. */
lrsmc_status lrsmc_sample(const lrsmc_model* model, int trials, int steps, uint64_t seed,
                          double* observations, double* latents);
/** lrsmc_sample under inputs (trials, steps, inputs); NULL only without inputs. */
lrsmc_status lrsmc_sample_with_inputs(const lrsmc_model* model, const double* inputs, int trials,
                                      int steps, uint64_t seed, double* observations,
                                      double* latents);

/** Fixed points of the latent map with zero input (method.md §7): exact for relu,
 *  clipped_relu and identity, a numerical search (256 starts, seed 0) for tanh.
 *  *count receives the number of fixed points found; the first min(*count, capacity) are
 *  written to `points` (capacity, rank), which may be NULL when capacity is 0. Call again
 *  with a larger buffer when *count > capacity. */
lrsmc_status lrsmc_fixed_points(const lrsmc_model* model, int* count, double* points,
                                int capacity);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LRSMC_LRSMC_H */
