/* The board's session policy against the Python planner's golden vectors: every event of every
 * weight-unit case in session_golden.txt (tools/policy_golden.py) computed by
 * sparcl_task_events, field by field, plus the random stream's published test vectors.
 * Usage: test_sparcl_policy [session_golden.txt]; exit 0 when every check passes. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_text.h"
#include "sparcl_policy.h"
#include "test_check.h"

#define MAX_LAYERS 8
#define MAX_EVENTS 64

static void test_stream_vectors(void) { /* tflite/README.md, "Random stream" */
  CHECK(sparcl_mix(0x9E3779B97F4A7C15ull) == 0xE220A8397B1DCDAFull, "mix");
  int64_t fields[3] = {0, 0, 0};
  uint64_t key = sparcl_stream_key(0, 1, fields, 2);
  CHECK(sparcl_stream_output(key, 0) == 0xC739F5EC15A29D83ull, "output 0");
  CHECK(sparcl_stream_below(key, 0, 10) == 7 && sparcl_stream_below(key, 1, 10) == 6 &&
        sparcl_stream_below(key, 2, 10) == 8, "below");
  int64_t growth[3][3] = {{0, 0, 0}, {0, 1, 2}, {42, 3, 9}};
  int64_t seeds[3] = {72373, 6450, 102700};
  for (int i = 0; i < 3; ++i)
    CHECK(sparcl_stream_below(sparcl_stream_key((uint64_t)growth[i][0], SPARCL_PURPOSE_GROWTH,
                                                growth[i] + 1, 2), 0, SPARCL_GROWTH_SEEDS) ==
          seeds[i], "growth seed %d", i);
}

static int test_golden(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
  char name[128];
  int compared = 0;
  while (fscanf(f, " case %127s", name) == 1) {
    sparcl_policy p;
    int32_t units[MAX_LAYERS];
    double targets[MAX_LAYERS];
    if (!read_policy(f, &p, units, targets, MAX_LAYERS)) {
      fprintf(stderr, "golden file: case %s has no readable policy\n", name);
      exit(2);
    }
    int task, examples, count;
    while (fscanf(f, " task %d %d %d", &task, &examples, &count) == 3) {
      sparcl_event events[MAX_EVENTS];
      int32_t prune[MAX_EVENTS * MAX_LAYERS], grow[MAX_EVENTS * MAX_LAYERS];
      int got = sparcl_task_events(&p, task, examples, events, prune, grow);
      CHECK(got == count, "%s task %d n %d: %d events, golden %d", name, task, examples, got, count);
      for (int i = 0; i < count; ++i) {
        int v[8];
        if (!read_word(f, "event")) { fprintf(stderr, "golden file: expected 'event'\n"); exit(2); }
        for (int k = 0; k < 8; ++k) if (fscanf(f, "%d", &v[k]) != 1) exit(2);
        if (i >= got) continue;
        sparcl_event *e = &events[i];
        int mine[8] = {e->epoch, e->numerator, e->denominator, e->update_index, e->mask_update,
                       (int)e->seed, e->removal_stage, e->removal_target};
        CHECK(memcmp(mine, v, sizeof(v)) == 0, "%s task %d n %d event %d differs", name, task,
              examples, i);
        for (int k = 0; v[4] && k < 2 * p.layers; ++k) {
          int32_t want;
          if (fscanf(f, "%" SCNd32, &want) != 1) exit(2);
          int32_t have = k < p.layers ? prune[i * p.layers + k] : grow[i * p.layers + k - p.layers];
          CHECK(have == want, "%s task %d n %d event %d count %d: %d, golden %d", name, task,
                examples, i, k, (int)have, (int)want);
        }
        ++compared;
      }
    }
  }
  fclose(f);
  return compared;
}

int main(int argc, char **argv) {
  test_stream_vectors();
  int compared = argc > 1 ? test_golden(argv[1]) : 0;
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("policy: %d golden events equal\n", compared);
  return 0;
}
