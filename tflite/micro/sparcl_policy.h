/* The session plan's policy on the board: a task's events computed when the task begins, from
 * its index and example count, and the plan's SplitMix64 random stream. Bit for bit the Python
 * reference (sparcl_tf/session/plan.py `task_events`, sparcl_tf/session/random.py; spec in
 * tflite/README.md, "Session plan"), held to it by the golden vectors in session_golden.txt
 * (tools/policy_golden.py). Plain C99, no allocation. Weight units only: the board's head has
 * weight masks, not filter slots. */
#ifndef SPARCL_POLICY_H_
#define SPARCL_POLICY_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SPARCL_RULE_NONE = 0, SPARCL_RULE_TDM = 1, SPARCL_RULE_RIGL = 2 };
enum { SPARCL_PURPOSE_EPOCH_ORDER = 1, SPARCL_PURPOSE_RESERVOIR = 2, SPARCL_PURPOSE_REPLAY = 3,
       SPARCL_PURPOSE_AUGMENT = 4, SPARCL_PURPOSE_REMOVAL = 5, SPARCL_PURPOSE_GROWTH = 6 };
#define SPARCL_GROWTH_SEEDS (1u << 17)

/* SplitMix64: mix(), the key of (seed, purpose, fields...), output n of a keyed stream and
 * below(output n, bound) = floor(double(u >> 11) * 2^-53 * bound). */
uint64_t sparcl_mix(uint64_t z);
uint64_t sparcl_stream_key(uint64_t seed, int purpose, const int64_t *fields, int count);
uint64_t sparcl_stream_output(uint64_t key, uint64_t n);
int64_t sparcl_stream_below(uint64_t key, uint64_t n, int64_t bound);

/* The plan's `schedule` (and seed, epochs) for `layers` weight-masked layers. */
typedef struct {
  uint64_t seed;
  int epochs_per_task, batch_size, updates_per_task, mask_rule; /* SPARCL_RULE_* */
  double removal_fraction;
  int removal_stages;
  int removal_min_task_steps; /* no removal in a task of fewer steps (sparcl_task_steps) */
  int layers;
  const int32_t *layer_units;   /* [layers] weights of each sparse layer */
  const double *layer_targets;  /* [layers] target sparsity of each */
  double open_fraction, swap_fraction;                 /* TDM */
  double rigl_drop_fraction, rigl_end_fraction;        /* RigL */
  int rigl_horizon_tasks;
} sparcl_policy;

typedef struct {
  int epoch, numerator, denominator; /* fires at floor((2 numerator L + denominator) / (2 denominator)) */
  int update_index, mask_update;
  int32_t seed;                      /* growth seed of a mask update */
  int removal_stage, removal_target; /* stage k > 0: remove up to this many of the task in total */
} sparcl_event;

/* The steps of a task of `examples` examples were none removed: epochs x full batches. */
int64_t sparcl_task_steps(const sparcl_policy *policy, int examples);

/* The events of task `task` (0-based) of `examples` training examples, in order, into
 * events[updates_per_task]; per-layer counts of event e at prune_to / grow_to[e * layers + l].
 * Returns the number of events. */
int sparcl_task_events(const sparcl_policy *policy, int task, int examples, sparcl_event *events,
                       int32_t *prune_to, int32_t *grow_to);

/* Units a layer of `size` keeps at `sparsity`: size - rint(sparsity * size). */
int32_t sparcl_active_count(int32_t size, double sparsity);

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_POLICY_H_ */
