/* The board's task loop run on the host: reads a session file written by
 * sparcl_tf/micro/board.py (`write_board_session`: the head's initial state, the plan's policy,
 * each task's int8 features), learns its tasks one by one with sparcl_session.c as a board
 * would, evaluates after each task, and writes the session's trace (sparcl_tf/session/trace.py
 * records, JSON lines) for comparison with the Python micro engine's.
 *
 * Usage: board_session SESSION_FILE TRACE_FILE [CANCEL_EVERY]
 * CANCEL_EVERY > 0 cancels the task loop every that many steps and plays a power cycle: the
 * progress, arena, head and buffer are copied out, the originals wiped, a fresh session set up
 * and the copies put back, then the task goes on. Exit 0 on success, 1 on a loop error, 2 on a
 * bad file or usage. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_text.h"
#include "sparcl_micro.h"
#include "sparcl_policy.h"
#include "sparcl_session.h"

#define MAX_TASKS 64

static void fail(const char *what) {
  fprintf(stderr, "error: session file: %s\n", what);
  exit(2);
}

static void *allocate(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size);
  if (!p) fail("out of memory");
  return p;
}

static void floats(FILE *f, const char *name, float *out, size_t n) {
  if (!read_word(f, name)) fail(name);
  for (size_t i = 0; i < n; ++i) if (fscanf(f, "%f", &out[i]) != 1) fail(name);
}

static void bytes(FILE *f, const char *name, uint8_t *out, size_t n) {
  if (!read_word(f, name)) fail(name);
  for (size_t i = 0; i < n; ++i) {
    int v;
    if (fscanf(f, "%d", &v) != 1 || v < 0 || v > 1) fail(name);
    out[i] = (uint8_t)v;
  }
}

static void features(FILE *f, int8_t *out, int n) {
  for (int i = 0; i < n; ++i) {
    int v;
    if (fscanf(f, "%d", &v) != 1 || v < -128 || v > 127) fail("features");
    out[i] = (int8_t)v;
  }
}

typedef struct {
  sparcl_task_data train;
  int tests;
  int8_t *test_x;
  int32_t *test_y, *ids, *labels, *classes;
  int8_t *x;
} task_file;

typedef struct {
  FILE *trace;
  int cancel_every, steps;
} runner;

static void record(void *context, const sparcl_record *r) {
  runner *run = context;
  if (r->kind == SPARCL_RECORD_STEP) {
    fprintf(run->trace, "{\"kind\": \"step\", \"task\": %d, \"step\": %lld, \"loss\": %.9g}\n",
            r->task, (long long)r->step, (double)r->loss);
    run->steps += 1;
  } else if (r->kind == SPARCL_RECORD_MASK_UPDATE) {
    fprintf(run->trace, "{\"kind\": \"mask_update\", \"task\": %d, \"update\": %d, "
            "\"active\": [%d]}\n", r->task, r->update, r->active);
  } else {
    fprintf(run->trace, "{\"kind\": \"removal\", \"task\": %d, \"stage\": %d, \"removed\": [",
            r->task, r->stage);
    for (int i = 0; i < r->count; ++i) fprintf(run->trace, "%s%d", i ? ", " : "", r->ids[i]);
    fprintf(run->trace, "]}\n");
  }
}

static int cancelled(void *context) {
  runner *run = context;
  return run->cancel_every > 0 && run->steps % run->cancel_every == 0;
}

/* A power cycle mid-task: everything the loop keeps is plain data (progress, arena, head,
 * buffer); copied out, wiped, a fresh session set up over the same memory, copied back. */
static void power_cycle(sparcl_session *s, void *arena, size_t arena_bytes) {
  sparcl_head *head = s->head;
  sparcl_buffer *buffer = s->buffer;
  const sparcl_head_config *h = &head->config;
  size_t n = (size_t)h->features * h->hidden;
  sparcl_progress progress = s->progress;
  uint8_t *flash = allocate(arena_bytes, 1);
  memcpy(flash, arena, arena_bytes);
  memset(arena, 0xA5, arena_bytes);
  size_t state = sparcl_state_bytes(h);
  uint8_t *blob = allocate(state, 1);
  if (sparcl_state_save(head, blob, state) != SPARCL_OK) fail("state blob");
  memset(head->w1, 0, n * sizeof(float));
  memset(head->mask, 0, n);
  if (sparcl_state_load(head, blob, state) != SPARCL_OK) fail("state blob");
  sparcl_buffer saved_buffer = buffer ? *buffer : (sparcl_buffer){0};
  sparcl_session_config config = s->config;
  void (*on_record)(void *, const sparcl_record *) = s->record;
  int (*on_cancel)(void *) = s->cancelled;
  void *context = s->context;
  memset(s, 0, sizeof(*s));
  if (sparcl_session_init(s, &config, head, buffer, arena, arena_bytes) != SPARCL_OK)
    fail("session setup after the power cycle");
  memcpy(arena, flash, arena_bytes);
  s->progress = progress;
  if (buffer) *buffer = saved_buffer;
  s->record = on_record, s->cancelled = on_cancel, s->context = context;
  free(flash);
  free(blob);
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s SESSION_FILE TRACE_FILE [CANCEL_EVERY]\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (!f) fail("cannot open it");
  char format[64];
  int version;
  if (fscanf(f, "%63s %d", format, &version) != 2 || strcmp(format, "sparcl_board_session") ||
      version != 3)
    fail("not a board session (version 3)");
  sparcl_head_config hc;
  memset(&hc, 0, sizeof(hc));
  if (!read_word(f, "head") || fscanf(f, "%d %d %d %f %d %d %f", &hc.features, &hc.hidden,
                                      &hc.classes, &hc.scale, &hc.zero_point,
                                      &hc.gradient_keep, &hc.w1_rate_scale) != 7 ||
      hc.features < 1 || hc.hidden < 1 || hc.classes < 1 || hc.classes > 64 ||
      !(hc.w1_rate_scale > 0.0f) || isinf(hc.w1_rate_scale))
    fail("head");
  sparcl_session_config config;
  memset(&config, 0, sizeof(config));
  int32_t units[1];
  double targets[1];
  if (!read_policy(f, &config.policy, units, targets, 1)) fail("policy");
  sparcl_learning_rate *rate = &config.learning_rate;
  if (!read_word(f, "rate") || fscanf(f, "%d %lf %lf %lf %d", &rate->schedule, &rate->base,
                                      &rate->final_fraction, &rate->gamma,
                                      &rate->milestones) != 5 ||
      rate->milestones < 0 || rate->milestones > SPARCL_MAX_MILESTONES)
    fail("rate");
  for (int i = 0; i < rate->milestones; ++i)
    if (fscanf(f, "%lf", &rate->milestone[i]) != 1) fail("rate");
  int capacity;
  if (!read_word(f, "session") ||
      fscanf(f, "%d %d %d %d %d %f %d", &config.replay_rows,
             &config.replay_draws, &config.replay_from_task, &capacity,
             &config.dgm_refresh_every, &config.importance_lambda, &config.grow) != 7 ||
      config.replay_draws < 0 || config.replay_draws > SPARCL_MAX_DRAWS || capacity < 0)
    fail("session");
  for (int d = 0; d < config.replay_draws; ++d)
    if (!read_word(f, "term") ||
        fscanf(f, "%d %f", &config.terms[d].kind, &config.terms[d].weight) != 2)
      fail("term");
  size_t n = (size_t)hc.features * hc.hidden;
  sparcl_head head = {hc, allocate(n, sizeof(float)), allocate(hc.hidden, sizeof(float)),
                      allocate((size_t)hc.hidden * hc.classes, sizeof(float)),
                      allocate(hc.classes, sizeof(float)), allocate(n, 1), allocate(n, 1),
                      allocate(n, sizeof(float))};
  floats(f, "w1", head.w1, n);
  floats(f, "b1", head.b1, hc.hidden);
  floats(f, "w2", head.w2, (size_t)hc.hidden * hc.classes);
  floats(f, "b2", head.b2, hc.classes);
  bytes(f, "mask", head.mask, n);
  bytes(f, "gradient_mask", head.gradient_mask, n);
  int num_tasks;
  if (!read_word(f, "tasks") || fscanf(f, "%d", &num_tasks) != 1 || num_tasks < 1 ||
      num_tasks > MAX_TASKS)
    fail("tasks");
  task_file *tasks = allocate((size_t)num_tasks, sizeof(task_file));
  for (int t = 0; t < num_tasks; ++t) {
    task_file *k = &tasks[t];
    int examples, classes;
    if (!read_word(f, "task") || fscanf(f, "%d %d %d", &examples, &k->tests, &classes) != 3 ||
        examples < 0 || k->tests < 0 || classes < 1 || !read_word(f, "classes"))
      fail("task");
    k->classes = allocate((size_t)classes, sizeof(int32_t));
    for (int i = 0; i < classes; ++i) if (fscanf(f, "%d", &k->classes[i]) != 1) fail("classes");
    k->x = allocate((size_t)examples * hc.features, 1);
    k->ids = allocate((size_t)examples, sizeof(int32_t));
    k->labels = allocate((size_t)examples, sizeof(int32_t));
    for (int i = 0; i < examples; ++i) {
      if (!read_word(f, "train") || fscanf(f, "%d %d", &k->ids[i], &k->labels[i]) != 2)
        fail("train");
      features(f, k->x + (size_t)i * hc.features, hc.features);
    }
    k->test_x = allocate((size_t)k->tests * hc.features, 1);
    k->test_y = allocate((size_t)k->tests, sizeof(int32_t));
    for (int i = 0; i < k->tests; ++i) {
      if (!read_word(f, "test") || fscanf(f, "%d", &k->test_y[i]) != 1) fail("test");
      features(f, k->test_x + (size_t)i * hc.features, hc.features);
    }
    k->train = (sparcl_task_data){examples, k->x, k->labels, k->ids, k->classes, classes};
    if (examples > config.max_examples) config.max_examples = examples;
  }
  fclose(f);

  sparcl_buffer buffer = {capacity, hc.features, hc.classes, config.policy.seed, 0,
                          allocate((size_t)capacity * hc.features, 1),
                          allocate((size_t)capacity, sizeof(int32_t)),
                          allocate((size_t)capacity * hc.classes, sizeof(float)),
                          allocate((size_t)capacity, sizeof(int32_t))};
  size_t arena_bytes = sparcl_session_arena_bytes(&config, &hc);
  void *arena = allocate(arena_bytes, 1);
  sparcl_session session;
  if (sparcl_session_init(&session, &config, &head, &buffer, arena, arena_bytes) != SPARCL_OK)
    fail("a session the board's loop cannot run");
  runner run = {fopen(argv[2], "w"), argc == 4 ? atoi(argv[3]) : 0, 0};
  if (!run.trace) fail("cannot write the trace file");
  session.record = record, session.cancelled = cancelled, session.context = &run;
  int cycles = 0;
  for (int t = 0; t < num_tasks; ++t) {
    int status;
    while ((status = sparcl_session_train_task(&session, &tasks[t].train)) == SPARCL_CANCELLED) {
      power_cycle(&session, arena, arena_bytes);
      ++cycles;
    }
    if (status != SPARCL_OK) {
      fprintf(stderr, "error: task %d: the board's loop returned %d\n", t, status);
      return 1;
    }
    fprintf(run.trace, "{\"kind\": \"task_end\", \"task\": %d, \"class_il\": [", t);
    double class_il[MAX_TASKS], task_il[MAX_TASKS];
    for (int e = 0; e < num_tasks; ++e) {
      int class_hits, task_hits;
      task_file *k = &tasks[e];
      if (e > t || k->tests == 0) {
        class_il[e] = task_il[e] = NAN;
        continue;
      }
      sparcl_session_evaluate(&session, k->test_x, k->test_y, k->tests, k->classes,
                              k->train.num_classes, &class_hits, &task_hits);
      class_il[e] = 100.0 * ((double)class_hits / k->tests);
      task_il[e] = 100.0 * ((double)task_hits / k->tests);
    }
    for (int row = 0; row < 2; ++row) {
      const double *values = row ? task_il : class_il;
      for (int e = 0; e < num_tasks; ++e) {
        if (isnan(values[e])) fprintf(run.trace, "%snull", e ? ", " : "");
        else fprintf(run.trace, "%s%.17g", e ? ", " : "", values[e]);
      }
      fprintf(run.trace, row ? "]}\n" : "], \"task_il\": [");
    }
  }
  fclose(run.trace);
  printf("board session: %d tasks, %d steps, %d power cycles, arena %zu B, state blob %zu B\n",
         num_tasks, run.steps, cycles, arena_bytes, sparcl_state_bytes(&hc));
  return 0;
}
