/* See sparcl_policy.h. */
#include "sparcl_policy.h"

#include <math.h>

#define GAMMA 0x9E3779B97F4A7C15ull
#define PI 3.141592653589793

uint64_t sparcl_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t sparcl_stream_key(uint64_t seed, int purpose, const int64_t *fields, int count) {
  uint64_t key = sparcl_mix(seed + GAMMA * ((uint64_t)purpose + 1));
  for (int i = 0; i < count; ++i) key = sparcl_mix(key + GAMMA * ((uint64_t)fields[i] + 1));
  return key;
}

uint64_t sparcl_stream_output(uint64_t key, uint64_t n) { return sparcl_mix(key + GAMMA * (n + 1)); }

int64_t sparcl_stream_below(uint64_t key, uint64_t n, int64_t bound) {
  double u = (double)(sparcl_stream_output(key, n) >> 11);
  return (int64_t)floor(u * (1.0 / 9007199254740992.0) * (double)bound);
}

int32_t sparcl_active_count(int32_t size, double sparsity) {
  return size - (int32_t)rint(sparsity * (double)size); /* rint: halves to even, as Python's round */
}

/* (prune_to, grow_to) sparsities of one layer at update `index` of task `task`. */
static void targets(const sparcl_policy *p, int task, int index, double target, double *prune,
                    double *grow) {
  int updates = p->updates_per_task;
  if (p->mask_rule == SPARCL_RULE_TDM) {
    *prune = target, *grow = target;
    if (index == 0) *grow = target - p->open_fraction;
    else if (index != updates - 1) *prune = target + p->swap_fraction;
    *prune = *prune < 1.0 ? *prune : 1.0;
    *grow = *grow > 0.0 ? *grow : 0.0;
    return;
  }
  double progress = (double)(index * p->epochs_per_task) / (double)updates;
  double run = ((double)task + progress / (double)p->epochs_per_task) / (double)p->rigl_horizon_tasks;
  *prune = target, *grow = target;
  if (run < p->rigl_end_fraction) {
    double drop = p->rigl_drop_fraction / 2.0 * (1.0 + cos(PI * run / p->rigl_end_fraction));
    *prune = target + drop * (1.0 - target);
  }
}

int64_t sparcl_task_steps(const sparcl_policy *p, int examples) {
  return (int64_t)p->epochs_per_task * (examples / p->batch_size);
}

int sparcl_task_events(const sparcl_policy *p, int task, int examples, sparcl_event *events,
                       int32_t *prune_to, int32_t *grow_to) {
  int updates = p->updates_per_task, count = 0;
  int stages = sparcl_task_steps(p, examples) >= p->removal_min_task_steps ? p->removal_stages : 0;
  int64_t total = (int64_t)floor(p->removal_fraction * (double)examples + 0.5);
  int update = p->mask_rule != SPARCL_RULE_NONE;
  for (int index = 0; index < updates; ++index) {
    int stage = index >= 1 && index <= stages ? index : 0;
    if (!update && !stage) continue;
    sparcl_event *e = &events[count];
    int span = index * p->epochs_per_task;
    e->epoch = span / updates;
    e->numerator = span - e->epoch * updates;
    e->denominator = updates;
    e->update_index = index;
    e->mask_update = update;
    e->seed = 0;
    e->removal_stage = stage;
    e->removal_target = stage ? (int)((2 * total * stage + stages) / (2 * (int64_t)stages)) : 0;
    if (update) {
      int64_t fields[2] = {task, index};
      e->seed = (int32_t)sparcl_stream_below(
          sparcl_stream_key(p->seed, SPARCL_PURPOSE_GROWTH, fields, 2), 0, SPARCL_GROWTH_SEEDS);
      for (int l = 0; l < p->layers; ++l) {
        double prune, grow;
        targets(p, task, index, p->layer_targets[l], &prune, &grow);
        prune_to[count * p->layers + l] = sparcl_active_count(p->layer_units[l], prune);
        grow_to[count * p->layers + l] = sparcl_active_count(p->layer_units[l], grow);
      }
    }
    ++count;
  }
  return count;
}
