/* See sparcl_session.h. Plain C99, no allocation, no recursion. */
#include "sparcl_session.h"

#include <math.h>
#include <string.h>

#define PI 3.141592653589793

double sparcl_learning_rate_value(const sparcl_learning_rate *rate, double progress) {
  double base = rate->base;
  if (rate->schedule == SPARCL_LR_COSINE) {
    double final = rate->final_fraction;
    return base * (final + (1.0 - final) * 0.5 * (1.0 + cos(PI * progress)));
  }
  if (rate->schedule == SPARCL_LR_STEP)
    for (int i = 0; i < rate->milestones; ++i)
      if (progress >= rate->milestone[i]) base *= rate->gamma;
  return base;
}

/* ---- the arena ------------------------------------------------------------------------------ */

typedef struct {
  uint8_t *at;  /* NULL while only counting */
  size_t used;
} carver;

static void *carve(carver *c, size_t count, size_t size) {
  size_t start = (c->used + 7u) & ~(size_t)7u;
  c->used = start + count * size;
  return c->at ? c->at + start : NULL;
}

static int rows_per_call(const sparcl_session_config *c) {
  return c->policy.batch_size > c->replay_rows ? c->policy.batch_size : c->replay_rows;
}

/* Lays the session's arrays out in `c` (counting only when c->at is NULL). */
static void lay_out(sparcl_session *s, const sparcl_session_config *config,
                    const sparcl_head_config *h, carver *c) {
  size_t n = (size_t)config->max_examples, b = (size_t)config->policy.batch_size;
  size_t replay = (size_t)config->replay_draws * (size_t)config->replay_rows;
  size_t updates = (size_t)config->policy.updates_per_task;
  s->order = carve(c, n, sizeof(int32_t));
  s->rows = carve(c, n, sizeof(int32_t));
  s->permutation = carve(c, n, sizeof(int32_t));
  s->ranked = carve(c, n, sizeof(int32_t));
  s->removed = carve(c, n, 1);
  s->presentations = carve(c, n, sizeof(int32_t));
  s->correct = carve(c, n, sizeof(int32_t));
  s->last_correct = carve(c, n, sizeof(int32_t));
  s->forgetting_events = carve(c, n, sizeof(int32_t));
  s->last_margin = carve(c, n, sizeof(float));
  s->events = carve(c, updates, sizeof(sparcl_event));
  s->prune_to = carve(c, updates, sizeof(int32_t));
  s->grow_to = carve(c, updates, sizeof(int32_t));
  s->mask_order = carve(c, (size_t)h->features * h->hidden, sizeof(int32_t));
  s->batch_x = carve(c, b * h->features, 1);
  s->batch_rows = carve(c, b, sizeof(int32_t));
  s->batch_labels = carve(c, b, sizeof(int32_t));
  s->batch_logits = carve(c, b * h->classes, sizeof(float));
  s->batch_correct = carve(c, b, 1);
  s->replay_x = carve(c, replay * h->features, 1);
  s->replay_labels = carve(c, replay, sizeof(int32_t));
  s->replay_logits = carve(c, replay * h->classes, sizeof(float));
  s->class_mask = carve(c, (size_t)h->classes, sizeof(float));
  s->scratch = carve(c, sparcl_scratch_floats(h, rows_per_call(config)), sizeof(float));
}

size_t sparcl_session_arena_bytes(const sparcl_session_config *config,
                                  const sparcl_head_config *head) {
  sparcl_session counting;
  carver c = {NULL, 0};
  lay_out(&counting, config, head, &c);
  return c.used + 8; /* room to align the arena's start */
}

int sparcl_session_init(sparcl_session *s, const sparcl_session_config *config,
                        sparcl_head *head, sparcl_buffer *buffer, void *arena, size_t bytes) {
  const sparcl_policy *p = &config->policy;
  if (config->policy.batch_size < 1 || config->max_examples < config->policy.batch_size ||
      config->replay_draws < 0 || config->replay_draws > SPARCL_MAX_DRAWS ||
      (config->replay_draws > 0 && (config->replay_rows < 1 || buffer == NULL)) ||
      config->learning_rate.milestones < 0 ||
      config->learning_rate.milestones > SPARCL_MAX_MILESTONES || p->layers != 1 ||
      p->layer_units[0] != head->config.features * head->config.hidden ||
      p->epochs_per_task < 1 || p->updates_per_task < 0 || head->config.classes > 64)
    return SPARCL_ERROR_DATA;
  if (bytes < sparcl_session_arena_bytes(config, &head->config)) return SPARCL_ERROR_SIZE;
  memset(s, 0, sizeof(*s));
  s->config = *config;
  s->head = head;
  s->buffer = config->replay_draws > 0 ? buffer : NULL;
  s->progress.epoch_length = -1;
  uintptr_t start = ((uintptr_t)arena + 7u) & ~(uintptr_t)7u;
  carver c = {(uint8_t *)start, 0};
  lay_out(s, config, &head->config, &c);
  return SPARCL_OK;
}

/* ---- the task's examples -------------------------------------------------------------------- */

static void emit(sparcl_session *s, const sparcl_record *record) {
  if (s->record) s->record(s->context, record);
}

/* Fisher-Yates from the top over `m` entries, as the stream's `permutation` (m - 1 outputs). */
static void permute(uint64_t key, int32_t *a, int m) {
  for (int i = 0; i < m; ++i) a[i] = i;
  for (int i = m - 1, step = 0; i >= 1; --i, ++step) {
    int j = (int)sparcl_stream_below(key, (uint64_t)step, i + 1);
    int32_t t = a[i]; a[i] = a[j]; a[j] = t;
  }
}

static uint64_t stream(const sparcl_session *s, int purpose, int64_t a, int64_t b) {
  int64_t fields[2] = {a, b};
  return sparcl_stream_key(s->config.policy.seed, purpose, fields, 2);
}

/* Rows of the task not removed, in data order, into s->rows; returns their count. */
static int kept_rows(const sparcl_session *s) {
  int m = 0;
  for (int row = 0; row < s->progress.examples; ++row)
    if (!s->removed[row]) s->rows[m++] = row;
  return m;
}

static int ascending_id(const void *context, int32_t a, int32_t b) {
  const int32_t *ids = context;
  return ids[a] < ids[b] || (ids[a] == ids[b] && a < b);
}

static int valid_task(sparcl_session *s, const sparcl_task_data *d) {
  const sparcl_head_config *h = &s->head->config;
  if (d->examples < s->config.policy.batch_size || d->examples > s->config.max_examples ||
      d->num_classes < 1 || !d->features || !d->labels || !d->ids || !d->classes)
    return 0;
  for (int i = 0; i < d->num_classes; ++i)
    if (d->classes[i] < 0 || d->classes[i] >= h->classes) return 0;
  for (int i = 0; i < d->examples; ++i)
    if (d->labels[i] < 0 || d->labels[i] >= h->classes || d->ids[i] < 0) return 0;
  int32_t *by_id = s->ranked; /* scratch: not in use between tasks */
  for (int i = 0; i < d->examples; ++i) by_id[i] = i;
  sparcl_sort(by_id, d->examples, ascending_id, d->ids);
  for (int i = 1; i < d->examples; ++i)
    if (d->ids[by_id[i]] == d->ids[by_id[i - 1]]) return 0;
  return 1;
}

static void reset_stats(sparcl_session *s) {
  size_t n = (size_t)s->progress.examples;
  memset(s->presentations, 0, n * sizeof(int32_t));
  memset(s->correct, 0, n * sizeof(int32_t));
  memset(s->last_correct, 0, n * sizeof(int32_t));
  memset(s->forgetting_events, 0, n * sizeof(int32_t));
  memset(s->last_margin, 0, n * sizeof(float));
}

/* The task's events, class mask: from the plan's policy, its size and its classes. */
static void begin_task(sparcl_session *s, const sparcl_task_data *d) {
  sparcl_progress *p = &s->progress;
  if (!p->in_task) { /* a fresh start of this task */
    p->in_task = 1;
    p->examples = d->examples;
    p->epoch = p->cursor = p->events_done = p->removed = 0;
    p->epoch_length = -1;
    memset(s->removed, 0, (size_t)d->examples);
    reset_stats(s);
  }
  s->num_events = sparcl_task_events(&s->config.policy, p->task, d->examples, s->events,
                                     s->prune_to, s->grow_to);
  for (int k = 0; k < s->head->config.classes; ++k) s->class_mask[k] = 0.0f;
  for (int i = 0; i < d->num_classes; ++i) s->class_mask[d->classes[i]] = 1.0f;
}

/* ---- one step ------------------------------------------------------------------------------- */

static void observe(sparcl_session *s, const int32_t *rows) {
  int classes = s->head->config.classes;
  for (int i = 0; i < s->config.policy.batch_size; ++i) {
    int row = rows[i], label = s->batch_labels[i], now = s->batch_correct[i] ? 1 : 0;
    const float *logits = s->batch_logits + i * classes;
    float other = -INFINITY;
    for (int k = 0; k < classes; ++k)
      if (k != label && logits[k] > other) other = logits[k];
    s->forgetting_events[row] += (s->presentations[row] > 0) * s->last_correct[row] * (1 - now);
    s->presentations[row] += 1;
    s->correct[row] += now;
    s->last_correct[row] = now;
    s->last_margin[row] = logits[label] - other;
  }
}

static int step(sparcl_session *s, const sparcl_task_data *d, const int32_t *rows) {
  sparcl_progress *p = &s->progress;
  const sparcl_session_config *c = &s->config;
  sparcl_head *head = s->head;
  int f = head->config.features, b = c->policy.batch_size, r = c->replay_rows;
  for (int i = 0; i < b; ++i) {
    memcpy(s->batch_x + i * f, d->features + (size_t)rows[i] * f, (size_t)f);
    s->batch_labels[i] = d->labels[rows[i]];
  }
  sparcl_replay_draw draws[SPARCL_MAX_DRAWS];
  int replay_on = s->buffer && p->task >= c->replay_from_task && sparcl_buffer_size(s->buffer) > 0;
  for (int draw = 0; replay_on && draw < c->replay_draws; ++draw) {
    draws[draw].features = s->replay_x + (size_t)draw * r * f;
    draws[draw].labels = s->replay_labels + draw * r;
    draws[draw].logits = s->replay_logits + (size_t)draw * r * head->config.classes;
    sparcl_buffer_sample(s->buffer, r, p->global_step, draw, s->replay_x + (size_t)draw * r * f,
                         s->replay_labels + draw * r,
                         s->replay_logits + (size_t)draw * r * head->config.classes);
  }
  int every = c->dgm_refresh_every;
  int refresh = every > 0 && (p->refresh_pending || p->steps_since_refresh >= every);
  p->steps_since_refresh = refresh ? 1 : p->steps_since_refresh + 1;
  p->refresh_pending = 0;
  double progress = ((double)p->epoch + (double)p->cursor / (double)p->epoch_length) /
                    (double)c->policy.epochs_per_task;
  head->config.learning_rate = (float)sparcl_learning_rate_value(&c->learning_rate, progress);
  float loss = sparcl_head_train_step(head, s->batch_x, s->batch_labels, b, s->class_mask, draws,
                                      c->terms, replay_on ? c->replay_draws : 0, r,
                                      replay_on ? 1.0f : 0.0f, refresh, s->batch_logits,
                                      s->batch_correct, s->scratch);
  if (!isfinite(loss)) return SPARCL_ERROR_DIVERGED;
  for (int i = 0; s->buffer && i < b; ++i)
    sparcl_buffer_add(s->buffer, s->batch_x + i * f, s->batch_labels[i],
                      s->batch_logits + i * head->config.classes);
  observe(s, rows);
  sparcl_record record = {SPARCL_RECORD_STEP, p->task, p->global_step, loss, 0, 0, 0, 0, NULL};
  emit(s, &record);
  p->global_step += 1;
  return SPARCL_OK;
}

/* The full batches of kept examples in [cursor, boundary); a partial batch waits for the next
 * segment. */
static int train_segment(sparcl_session *s, const sparcl_task_data *d, int boundary) {
  sparcl_progress *p = &s->progress;
  int32_t *rows = s->batch_rows;
  int filled = 0, b = s->config.policy.batch_size;
  for (int position = p->cursor; position < boundary; ++position) {
    int row = s->order[position];
    if (s->removed[row]) continue;
    rows[filled++] = row;
    if (filled < b) continue;
    int status = step(s, d, rows);
    if (status != SPARCL_OK) return status;
    filled = 0;
    p->cursor = position + 1;
    if (s->cancelled && s->cancelled(s->context)) return SPARCL_CANCELLED;
  }
  return SPARCL_OK;
}

/* ---- events --------------------------------------------------------------------------------- */

/* Fewest forgetting events first (never correct counts as the most), then the larger last
 * margin, then the stage's permutation (sparcl_tf/sparsity/ddr.py). a, b: candidate positions. */
static int easier(const void *context, int32_t a, int32_t b) {
  const sparcl_session *s = context;
  int ra = s->rows[a], rb = s->rows[b];
  int64_t ea = s->correct[ra] > 0 ? s->forgetting_events[ra] : INT32_MAX;
  int64_t eb = s->correct[rb] > 0 ? s->forgetting_events[rb] : INT32_MAX;
  if (ea != eb) return ea < eb;
  float ma = s->last_margin[ra], mb = s->last_margin[rb];
  if (ma != mb) return ma > mb;
  return s->permutation[a] < s->permutation[b];
}

static void remove_examples(sparcl_session *s, const sparcl_task_data *d, const sparcl_event *e) {
  sparcl_progress *p = &s->progress;
  int m = kept_rows(s);
  permute(stream(s, SPARCL_PURPOSE_REMOVAL, p->task, e->removal_stage), s->permutation, m);
  for (int i = 0; i < m; ++i) s->ranked[i] = i;
  sparcl_sort(s->ranked, m, easier, s);
  int want = e->removal_target - p->removed, count = 0;
  for (int i = 0; i < m && count < want; ++i) {
    int row = s->rows[s->ranked[i]];
    if (s->presentations[row] == 0) continue;
    s->removed[row] = 1;
    s->ranked[count++] = d->ids[row]; /* ranked[i] is read above before count reaches it */
  }
  p->removed += count;
  reset_stats(s); /* the next stage ranks by its own window */
  sparcl_record record = {SPARCL_RECORD_REMOVAL, p->task, p->global_step, 0.0f, 0, 0,
                          e->removal_stage, count, s->ranked};
  emit(s, &record);
}

static void apply_event(sparcl_session *s, const sparcl_task_data *d, int index) {
  const sparcl_event *e = &s->events[index];
  sparcl_progress *p = &s->progress;
  if (e->mask_update) {
    int active = sparcl_update_mask(s->head, s->prune_to[index], s->grow_to[index],
                                    s->config.importance_lambda, s->config.grow, e->seed,
                                    s->mask_order);
    p->refresh_pending = 1; /* fresh gradient masks after every mask change */
    sparcl_record record = {SPARCL_RECORD_MASK_UPDATE, p->task, p->global_step, 0.0f,
                            e->update_index, active, 0, 0, NULL};
    emit(s, &record);
  }
  if (e->removal_stage > 0) remove_examples(s, d, e);
}

/* ---- the loop ------------------------------------------------------------------------------- */

static int train_epoch(sparcl_session *s, const sparcl_task_data *d) {
  sparcl_progress *p = &s->progress;
  if (p->epoch_length < 0) {
    int m = kept_rows(s);
    permute(stream(s, SPARCL_PURPOSE_EPOCH_ORDER, p->task, p->epoch), s->permutation, m);
    for (int i = 0; i < m; ++i) s->order[i] = s->rows[s->permutation[i]];
    p->epoch_length = m;
    p->cursor = p->events_done = 0;
    p->refresh_pending = 1; /* fresh gradient masks at each epoch's start */
  }
  for (int index = 0, seen = 0; index < s->num_events; ++index) {
    const sparcl_event *e = &s->events[index];
    if (e->epoch != p->epoch || seen++ < p->events_done) continue;
    int boundary = (int)((2 * (int64_t)e->numerator * p->epoch_length + e->denominator) /
                         (2 * (int64_t)e->denominator));
    int status = train_segment(s, d, boundary);
    if (status != SPARCL_OK) return status;
    apply_event(s, d, index);
    p->events_done += 1;
  }
  int status = train_segment(s, d, p->epoch_length);
  if (status != SPARCL_OK) return status;
  p->epoch += 1;
  p->epoch_length = -1;
  p->cursor = p->events_done = 0;
  return SPARCL_OK;
}

int sparcl_session_train_task(sparcl_session *s, const sparcl_task_data *d) {
  sparcl_progress *p = &s->progress;
  if ((p->in_task && d->examples != p->examples) || !valid_task(s, d))
    return SPARCL_ERROR_DATA;
  begin_task(s, d);
  while (p->epoch < s->config.policy.epochs_per_task) {
    int status = train_epoch(s, d);
    if (status != SPARCL_OK) return status;
  }
  p->task += 1;
  p->in_task = 0;
  p->epoch = p->cursor = p->events_done = 0;
  p->epoch_length = -1;
  return SPARCL_OK;
}

/* The first of `candidates` with the largest logit (numpy's argmax rule). */
static int argmax(const float *logits, const int32_t *candidates, int count) {
  int best = candidates ? candidates[0] : 0;
  for (int i = 0; i < count; ++i) {
    int k = candidates ? candidates[i] : i;
    if (logits[k] > logits[best]) best = k;
  }
  return best;
}

void sparcl_session_evaluate(sparcl_session *s, const int8_t *features, const int32_t *labels,
                             int rows, const int32_t *classes, int num_classes, int *class_hits,
                             int *task_hits) {
  const sparcl_head_config *h = &s->head->config;
  int chunk = s->config.policy.batch_size;
  *class_hits = *task_hits = 0;
  for (int start = 0; start < rows; start += chunk) {
    int n = rows - start < chunk ? rows - start : chunk;
    sparcl_head_infer(s->head, features + (size_t)start * h->features, n, s->batch_logits,
                      s->scratch);
    for (int i = 0; i < n; ++i) {
      const float *logits = s->batch_logits + i * h->classes;
      *class_hits += argmax(logits, NULL, h->classes) == labels[start + i];
      *task_hits += argmax(logits, classes, num_classes) == labels[start + i];
    }
  }
}
