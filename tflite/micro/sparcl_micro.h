/* SparCL on a microcontroller: the board side of sparcl-tf's micro path.
 *
 * A frozen int8 backbone (run by TFLite Micro, see port_tflm.cc) turns each image into F int8
 * features; everything after that is here, in C99 with no allocation: a small head
 * (F -> H masked dense + ReLU -> C dense) trained by SGD with the run's replay terms (DER++:
 * MSE to stored logits on one draw, CE on another), the DGM gradient mask (16-step threshold
 * bisection), TDM mask updates with exact counts, a reservoir buffer of int8 features, and the
 * head's state as a flash-sized blob with a CRC. The math mirrors sparcl_tf/micro/head.py, and
 * tests/test_micro_c.py checks one step against it.
 */
#ifndef SPARCL_MICRO_H_
#define SPARCL_MICRO_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SPARCL_OK = 0, SPARCL_ERROR_SIZE = -1, SPARCL_ERROR_FORMAT = -2, SPARCL_ERROR_CRC = -3 };
enum { SPARCL_TERM_MSE = 0, SPARCL_TERM_CE = 1 };

typedef struct {
  int features, hidden, classes;
  float scale;      /* feature dequantisation: (q - zero_point) * scale */
  int zero_point;
  float learning_rate; /* of the next step: set it before each step from the session plan's
                          learning_rate schedule (sparcl_tf/session/learning_rate.py) */
  int gradient_keep; /* entries of w1 a step updates (DGM); features * hidden = no DGM */
  float w1_rate_scale; /* w1 learns at learning_rate * this (sparsity.rate_scaling); 1 = same */
} sparcl_head_config;

typedef struct {
  sparcl_head_config config;
  float *w1, *b1, *w2, *b2; /* [F*H], [H], [H*C], [C], row-major like the TF kernels */
  uint8_t *mask;            /* [F*H] 1 = active weight of w1 */
  uint8_t *gradient_mask;   /* [F*H] 1 = w1 entry the steps update (DGM) */
  float *last_gradient;     /* [F*H] dense w1 gradient of the last step (TDM importance) */
} sparcl_head;

typedef struct {
  int kind;      /* SPARCL_TERM_MSE or SPARCL_TERM_CE */
  float weight;  /* alpha or beta */
} sparcl_replay_term;

typedef struct {
  const int8_t *features; /* [R*F] */
  const int32_t *labels;  /* [R] */
  const float *logits;    /* [R*C] stored with the examples */
} sparcl_replay_draw;

/* Floats of scratch memory sparcl_head_train_step needs for `rows` examples at a time. */
size_t sparcl_scratch_floats(const sparcl_head_config *config, int rows);

/* One SGD step; returns the loss. class_mask[C] is 1 for the current task's classes.
 * draws/terms: num_draws replay draws of replay_rows examples (0 while the buffer is empty:
 * pass replay_weight 0). refresh != 0 recomputes the gradient mask from this step's gradient.
 * logits_out [batch*C] and correct_out [batch] receive the current batch's results. */
float sparcl_head_train_step(sparcl_head *head, const int8_t *features, const int32_t *labels,
                             int batch, const float *class_mask, const sparcl_replay_draw *draws,
                             const sparcl_replay_term *terms, int num_draws, int replay_rows,
                             float replay_weight, int refresh, float *logits_out,
                             uint8_t *correct_out, float *scratch);

/* Logits [rows*C] of int8 features [rows*F]. */
void sparcl_head_infer(const sparcl_head *head, const int8_t *features, int rows, float *logits,
                       float *scratch);

/* TDM prune-and-grow of w1, as the Python head (sparcl_tf/sparsity/tdm.py `prune_and_grow`):
 * keep the `prune_to` active weights of largest |w| + lambda |last_gradient| (float32; ties:
 * lower index), then activate inactive positions up to `grow_to` active weights, by the largest
 * growth score: SPARCL_GROW_RANDOM the plan's seeded hash (sparcl_tf/sparsity/growth.py; `seed`
 * is the mask update's growth seed from the session policy, sparcl_policy.h), SPARCL_GROW_GRADIENT
 * |last_gradient| (ties: lower index). RigL is lambda 0 with gradient growth. Dropped weights
 * become 0, grown ones start at 0; last_gradient is left as it was. order: scratch of F*H int32.
 * Returns the active count. */
enum { SPARCL_GROW_RANDOM = 0, SPARCL_GROW_GRADIENT = 1 };
int sparcl_update_mask(sparcl_head *head, int prune_to, int grow_to, float importance_lambda,
                       int grow, int32_t seed, int32_t *order);

/* Heap sort of idx[0..n) into `before` order (no recursion, no allocation). before(context, a,
 * b) is nonzero when a ranks strictly before b; it must be a strict total order. */
typedef int (*sparcl_before_fn)(const void *context, int32_t a, int32_t b);
void sparcl_sort(int32_t *idx, int n, sparcl_before_fn before, const void *context);

/* Reservoir buffer of int8 features (Algorithm R), with labels and stored logits, drawn from the
 * session plan's SplitMix64 stream as the Python host's buffer (sparcl_tf/replay/buffer.py):
 * the p-th example offered goes to slot p while there is room, then to slot below(p + 1) of the
 * reservoir stream (seed, 2) at output p, kept when that is below the capacity. */
typedef struct {
  int capacity, features, classes;
  uint64_t seed;  /* the plan's seed */
  uint32_t seen;
  int8_t *x;      /* [capacity*F] */
  int32_t *y;     /* [capacity] */
  float *logits;  /* [capacity*C] */
  int32_t *order; /* [capacity] scratch of the draws */
} sparcl_buffer;

int sparcl_buffer_size(const sparcl_buffer *buffer);
size_t sparcl_buffer_bytes_per_example(int features, int classes); /* F + 1 + 4C as stored */
void sparcl_buffer_add(sparcl_buffer *buffer, const int8_t *x, int32_t label,
                       const float *logits);
/* Draw `draw` of global step `step`: `rows` entries, distinct(size, rows) of the replay stream
 * (seed, 3, step, draw) while the buffer holds that many, cycled when it holds fewer. */
void sparcl_buffer_sample(sparcl_buffer *buffer, int rows, int64_t step, int draw, int8_t *x,
                          int32_t *labels, float *logits);

/* The head's state (shapes, parameters, masks) as a blob for flash, with a CRC-32. Loading
 * refuses, with the head unchanged, a blob of another length (SPARCL_ERROR_SIZE), another magic,
 * version or shape, non-finite parameters, mask bytes other than 0/1 or a weight where the mask
 * is 0 (SPARCL_ERROR_FORMAT), and damaged bytes (SPARCL_ERROR_CRC). */
size_t sparcl_state_bytes(const sparcl_head_config *config);
int sparcl_state_save(const sparcl_head *head, uint8_t *blob, size_t capacity);
int sparcl_state_load(sparcl_head *head, const uint8_t *blob, size_t length);

uint32_t sparcl_crc32(const uint8_t *data, size_t length);

/* Feature extraction, implemented by the port (TFLite Micro: port_tflm.cc). */
typedef int (*sparcl_extract_fn)(void *context, const int8_t *image, int8_t *features);

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_MICRO_H_ */
