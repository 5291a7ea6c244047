/* Host-side reading of the plan's policy lines (`policy`, `units`, `targets`: written by
 * sparcl_tf/micro/board.py `policy_lines`) into a sparcl_policy; shared by the policy test and
 * the board session runner. Returns 1 when the three lines were read. */
#ifndef SPARCL_POLICY_TEXT_H_
#define SPARCL_POLICY_TEXT_H_

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sparcl_policy.h"

static int read_word(FILE *f, const char *word) {
  char got[64];
  return fscanf(f, "%63s", got) == 1 && strcmp(got, word) == 0;
}

static int read_policy(FILE *f, sparcl_policy *p, int32_t *units, double *targets,
                       int max_layers) {
  unsigned long long seed;
  if (!read_word(f, "policy") ||
      fscanf(f, "%llu %d %d %d %d %d %lf %d %lf %lf %lf %lf %d %d", &seed, &p->epochs_per_task,
             &p->batch_size, &p->updates_per_task, &p->mask_rule, &p->removal_stages,
             &p->removal_fraction, &p->removal_min_task_steps, &p->open_fraction,
             &p->swap_fraction, &p->rigl_drop_fraction, &p->rigl_end_fraction,
             &p->rigl_horizon_tasks, &p->layers) != 14 ||
      p->batch_size < 1 || p->removal_min_task_steps < 0 || p->layers < 0 ||
      p->layers > max_layers || !read_word(f, "units"))
    return 0;
  p->seed = seed;
  for (int l = 0; l < p->layers; ++l) if (fscanf(f, "%" SCNd32, &units[l]) != 1) return 0;
  if (!read_word(f, "targets")) return 0;
  for (int l = 0; l < p->layers; ++l) if (fscanf(f, "%lf", &targets[l]) != 1) return 0;
  p->layer_units = units;
  p->layer_targets = targets;
  return 1;
}

#endif /* SPARCL_POLICY_TEXT_H_ */
