/* See sparcl_micro.h. Plain C99, no allocation, no recursion: every buffer comes from the caller. */
#include "sparcl_micro.h"

#include <math.h>
#include <string.h>

#include "sparcl_policy.h"

#define NEG_LOGIT 1e9f
#define BISECTION_STEPS 16

static const uint8_t kMagic[4] = {'S', 'P', 'C', 'L'};
static const uint32_t kVersion = 1;

/* ---- the head ------------------------------------------------------------------------------ */

size_t sparcl_scratch_floats(const sparcl_head_config *c, int rows) {
  return (size_t)rows * (size_t)(c->features + 3 * c->hidden + 2 * c->classes) +
         (size_t)c->hidden + (size_t)c->hidden * c->classes + (size_t)c->classes;
}

typedef struct {
  float *x, *pre, *hidden, *logits, *dlogits, *dpre; /* per-row activations */
  float *gb1, *gw2, *gb2;                            /* gradients (gw1 is head->last_gradient) */
} workspace;

static workspace carve(const sparcl_head_config *c, int rows, float *scratch) {
  workspace w;
  w.x = scratch;
  w.pre = w.x + rows * c->features;
  w.hidden = w.pre + rows * c->hidden;
  w.dpre = w.hidden + rows * c->hidden;
  w.logits = w.dpre + rows * c->hidden;
  w.dlogits = w.logits + rows * c->classes;
  w.gb1 = w.dlogits + rows * c->classes;
  w.gw2 = w.gb1 + c->hidden;
  w.gb2 = w.gw2 + c->hidden * c->classes;
  return w;
}

static void forward(const sparcl_head *head, const int8_t *q, int rows, workspace *w) {
  const sparcl_head_config *c = &head->config;
  for (int i = 0; i < rows * c->features; ++i)
    w->x[i] = ((float)q[i] - (float)c->zero_point) * c->scale;
  for (int r = 0; r < rows; ++r) {
    for (int h = 0; h < c->hidden; ++h) {
      float sum = 0.0f;
      for (int f = 0; f < c->features; ++f) {
        int k = f * c->hidden + h;
        if (head->mask[k]) sum += w->x[r * c->features + f] * head->w1[k];
      }
      float pre = sum + head->b1[h];
      w->pre[r * c->hidden + h] = pre;
      w->hidden[r * c->hidden + h] = pre > 0.0f ? pre : 0.0f;
    }
    for (int k = 0; k < c->classes; ++k) {
      float sum = 0.0f;
      for (int h = 0; h < c->hidden; ++h)
        sum += w->hidden[r * c->hidden + h] * head->w2[h * c->classes + k];
      w->logits[r * c->classes + k] = sum + head->b2[k];
    }
  }
}

/* log-softmax of one row of `n` logits into out. */
static void log_softmax(const float *logits, int n, float *out) {
  float max = logits[0];
  for (int k = 1; k < n; ++k) max = logits[k] > max ? logits[k] : max;
  float sum = 0.0f;
  for (int k = 0; k < n; ++k) sum += expf(logits[k] - max);
  float log_sum = logf(sum);
  for (int k = 0; k < n; ++k) out[k] = logits[k] - max - log_sum;
}

/* Adds the parameter gradients of `rows` examples, given d loss / d logits in w->dlogits. */
static void backward(const sparcl_head *head, int rows, workspace *w, float *gw1) {
  const sparcl_head_config *c = &head->config;
  for (int r = 0; r < rows; ++r) {
    const float *d = w->dlogits + r * c->classes;
    for (int h = 0; h < c->hidden; ++h) {
      float hidden = w->hidden[r * c->hidden + h], back = 0.0f;
      for (int k = 0; k < c->classes; ++k) {
        w->gw2[h * c->classes + k] += hidden * d[k];
        back += d[k] * head->w2[h * c->classes + k];
      }
      w->dpre[r * c->hidden + h] = w->pre[r * c->hidden + h] > 0.0f ? back : 0.0f;
    }
    for (int k = 0; k < c->classes; ++k) w->gb2[k] += d[k];
    for (int h = 0; h < c->hidden; ++h) {
      float dpre = w->dpre[r * c->hidden + h];
      w->gb1[h] += dpre;
      for (int f = 0; f < c->features; ++f) gw1[f * c->hidden + h] += w->x[r * c->features + f] * dpre;
    }
  }
}

/* The 16-step threshold bisection of sparsity/dgm.py: count(|g| >= t) <= keep. */
static float bisection_threshold(const float *g, const uint8_t *mask, int n, int keep) {
  float max = 0.0f;
  for (int i = 0; i < n; ++i) {
    float m = mask[i] ? fabsf(g[i]) : 0.0f;
    max = m > max ? m : max;
  }
  float low = 0.0f, high = max * 1.000001f;
  for (int step = 0; step < BISECTION_STEPS; ++step) {
    float middle = (low + high) / 2.0f;
    int count = 0;
    for (int i = 0; i < n; ++i) count += (mask[i] ? fabsf(g[i]) : 0.0f) >= middle;
    if (count > keep) low = middle; else high = middle;
  }
  return high;
}

float sparcl_head_train_step(sparcl_head *head, const int8_t *features, const int32_t *labels,
                             int batch, const float *class_mask, const sparcl_replay_draw *draws,
                             const sparcl_replay_term *terms, int num_draws, int replay_rows,
                             float replay_weight, int refresh, float *logits_out,
                             uint8_t *correct_out, float *scratch) {
  const sparcl_head_config *c = &head->config;
  int rows = batch > replay_rows ? batch : replay_rows;
  int n = c->features * c->hidden;
  workspace w = carve(c, rows, scratch);
  float *gw1 = head->last_gradient;
  memset(gw1, 0, sizeof(float) * n);
  memset(w.gb1, 0, sizeof(float) * (c->hidden + c->hidden * c->classes + c->classes));
  float log_p[64];  /* classes <= 64 */

  forward(head, features, batch, &w);
  float loss = 0.0f;
  for (int r = 0; r < batch; ++r) {
    float masked[64];
    float *row = w.logits + r * c->classes;
    for (int k = 0; k < c->classes; ++k) masked[k] = row[k] + (class_mask[k] - 1.0f) * NEG_LOGIT;
    log_softmax(masked, c->classes, log_p);
    int best = 0;
    for (int k = 0; k < c->classes; ++k) {
      float onehot = k == labels[r] ? 1.0f : 0.0f;
      loss -= onehot * log_p[k] / (float)batch;
      w.dlogits[r * c->classes + k] = (expf(log_p[k]) - onehot) / (float)batch;
      if (row[k] > row[best]) best = k;
      logits_out[r * c->classes + k] = row[k];
    }
    correct_out[r] = best == labels[r];
  }
  backward(head, batch, &w, gw1);

  for (int d = 0; d < num_draws; ++d) {
    forward(head, draws[d].features, replay_rows, &w);
    float weight = replay_weight * terms[d].weight;
    for (int r = 0; r < replay_rows; ++r) {
      float *row = w.logits + r * c->classes, *grad = w.dlogits + r * c->classes;
      if (terms[d].kind == SPARCL_TERM_MSE) {
        float count = (float)(replay_rows * c->classes);
        for (int k = 0; k < c->classes; ++k) {
          float diff = row[k] - draws[d].logits[r * c->classes + k];
          loss += weight * diff * diff / count;
          grad[k] = weight * 2.0f * diff / count;
        }
      } else {
        log_softmax(row, c->classes, log_p);
        for (int k = 0; k < c->classes; ++k) {
          float onehot = k == draws[d].labels[r] ? 1.0f : 0.0f;
          loss -= weight * onehot * log_p[k] / (float)replay_rows;
          grad[k] = weight * (expf(log_p[k]) - onehot) / (float)replay_rows;
        }
      }
    }
    backward(head, replay_rows, &w, gw1);
  }

  if (refresh) {
    float threshold = bisection_threshold(gw1, head->mask, n, c->gradient_keep);
    for (int i = 0; i < n; ++i) {
      float m = head->mask[i] ? fabsf(gw1[i]) : 0.0f;
      head->gradient_mask[i] = m >= threshold && m > 0.0f;
    }
  }
  float w1_rate = c->learning_rate * c->w1_rate_scale;
  for (int i = 0; i < n; ++i)
    head->w1[i] = (head->mask[i] && head->gradient_mask[i])
                      ? head->w1[i] - w1_rate * gw1[i] : (head->mask[i] ? head->w1[i] : 0.0f);
  for (int h = 0; h < c->hidden; ++h) head->b1[h] -= c->learning_rate * w.gb1[h];
  for (int i = 0; i < c->hidden * c->classes; ++i) head->w2[i] -= c->learning_rate * w.gw2[i];
  for (int k = 0; k < c->classes; ++k) head->b2[k] -= c->learning_rate * w.gb2[k];
  return loss;
}

void sparcl_head_infer(const sparcl_head *head, const int8_t *features, int rows, float *logits,
                       float *scratch) {
  workspace w = carve(&head->config, rows, scratch);
  forward(head, features, rows, &w);
  memcpy(logits, w.logits, sizeof(float) * rows * head->config.classes);
}

/* ---- TDM mask update ----------------------------------------------------------------------- */

void sparcl_sort(int32_t *idx, int n, sparcl_before_fn before, const void *context) {
  for (int start = n / 2 - 1, end = n; end > 1;) {
    int root;
    if (start >= 0) {
      root = start--;
    } else {
      int32_t t = idx[0]; idx[0] = idx[--end]; idx[end] = t;
      root = 0;
    }
    for (int child; (child = 2 * root + 1) < end; root = child) {
      if (child + 1 < end && before(context, idx[child], idx[child + 1])) ++child;
      if (!before(context, idx[root], idx[child])) break;
      int32_t t = idx[root]; idx[root] = idx[child]; idx[child] = t;
    }
  }
  /* the root ranks last in `before` order and moves to the end each round: idx ends best first */
}

/* The plan's growth hash (sparcl_tf/sparsity/growth.py `scores`): Park-Miller x -> 48271 x mod
 * (2^31 - 1), three rounds from a seeded offset; a bijection, so no two positions tie. */
static int64_t growth_score(int64_t position, int32_t seed, int layer) {
  const int64_t m = 2147483647, a = 48271;
  int64_t x = (position + ((int64_t)seed * 7919 + (int64_t)layer * 104729) % (m - 1)) % (m - 1) + 1;
  for (int round = 0; round < 3; ++round) x = (a * x) % m;
  return x;
}

typedef struct {
  const sparcl_head *head;
  float importance_lambda;
} importance_order;

/* The prune order: larger |w| + lambda |last gradient| (float32, as numpy), then lower index. */
static int more_important(const void *context, int32_t a, int32_t b) {
  const importance_order *o = context;
  const sparcl_head *h = o->head;
  float sa = fabsf(h->w1[a]) + o->importance_lambda * fabsf(h->last_gradient[a]) * h->mask[a];
  float sb = fabsf(h->w1[b]) + o->importance_lambda * fabsf(h->last_gradient[b]) * h->mask[b];
  return sa > sb || (sa == sb && a < b);
}

/* The inactive position that grows next: largest growth score (the seeded hash, or |last
 * gradient|), ties to the lower index; -1 when every position is active. */
static int next_growth(const sparcl_head *head, int n, int grow, int32_t seed) {
  int best = -1;
  int64_t best_hash = -1;
  float best_gradient = -1.0f;
  for (int i = 0; i < n; ++i) {
    if (head->mask[i]) continue;
    if (grow == SPARCL_GROW_GRADIENT) {
      float g = fabsf(head->last_gradient[i]);
      if (g > best_gradient) best_gradient = g, best = i;
    } else {
      int64_t hash = growth_score(i, seed, 0);
      if (hash > best_hash) best_hash = hash, best = i;
    }
  }
  return best;
}

int sparcl_update_mask(sparcl_head *head, int prune_to, int grow_to, float importance_lambda,
                       int grow, int32_t seed, int32_t *order) {
  int n = head->config.features * head->config.hidden, active = 0;
  for (int i = 0; i < n; ++i)
    if (head->mask[i]) order[active++] = i;
  if (active > prune_to) {
    importance_order o = {head, importance_lambda};
    sparcl_sort(order, active, more_important, &o);
    for (int i = prune_to; i < active; ++i) {
      head->mask[order[i]] = 0;
      head->w1[order[i]] = 0.0f;
    }
    active = prune_to;
  }
  for (int best; active < grow_to && (best = next_growth(head, n, grow, seed)) >= 0; ++active) {
    head->mask[best] = 1;
    head->w1[best] = 0.0f;
  }
  return active;
}

/* ---- reservoir buffer of features ----------------------------------------------------------- */

int sparcl_buffer_size(const sparcl_buffer *b) {
  return b->seen < (uint32_t)b->capacity ? (int)b->seen : b->capacity;
}

size_t sparcl_buffer_bytes_per_example(int features, int classes) {
  return (size_t)features + 1 + 4 * (size_t)classes;
}

void sparcl_buffer_add(sparcl_buffer *b, const int8_t *x, int32_t label, const float *logits) {
  uint64_t slot = b->seen;
  if (b->seen >= (uint32_t)b->capacity)
    slot = (uint64_t)sparcl_stream_below(
        sparcl_stream_key(b->seed, SPARCL_PURPOSE_RESERVOIR, NULL, 0), b->seen,
        (int64_t)b->seen + 1);
  b->seen++;
  if (slot >= (uint64_t)b->capacity) return;
  memcpy(b->x + slot * b->features, x, (size_t)b->features);
  b->y[slot] = label;
  memcpy(b->logits + slot * b->classes, logits, sizeof(float) * b->classes);
}

void sparcl_buffer_sample(sparcl_buffer *b, int rows, int64_t step, int draw, int8_t *x,
                          int32_t *labels, float *logits) {
  int size = sparcl_buffer_size(b), count = rows < size ? rows : size;
  int64_t fields[2] = {step, draw};
  uint64_t key = sparcl_stream_key(b->seed, SPARCL_PURPOSE_REPLAY, fields, 2);
  for (int i = 0; i < size; ++i) b->order[i] = i;
  for (int i = 0; i < count; ++i) { /* partial Fisher-Yates: distinct(size, count) */
    int j = i + (int)sparcl_stream_below(key, (uint64_t)i, size - i);
    int32_t t = b->order[i]; b->order[i] = b->order[j]; b->order[j] = t;
  }
  for (int i = 0; i < rows && count > 0; ++i) {
    int slot = b->order[i % count];
    memcpy(x + i * b->features, b->x + slot * b->features, (size_t)b->features);
    labels[i] = b->y[slot];
    memcpy(logits + i * b->classes, b->logits + slot * b->classes, sizeof(float) * b->classes);
  }
}

/* ---- state blob ----------------------------------------------------------------------------- */

uint32_t sparcl_crc32(const uint8_t *data, size_t length) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < length; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static size_t payload_bytes(const sparcl_head_config *c) {
  size_t n = (size_t)c->features * c->hidden;
  return sizeof(float) * (n + c->hidden + (size_t)c->hidden * c->classes + c->classes) + 2 * n;
}

size_t sparcl_state_bytes(const sparcl_head_config *c) {
  return 4 + 4 * sizeof(int32_t) + payload_bytes(c) + sizeof(uint32_t);
}

static uint8_t *put(uint8_t *at, const void *data, size_t bytes) {
  memcpy(at, data, bytes);
  return at + bytes;
}

int sparcl_state_save(const sparcl_head *head, uint8_t *blob, size_t capacity) {
  const sparcl_head_config *c = &head->config;
  if (capacity < sparcl_state_bytes(c)) return SPARCL_ERROR_SIZE;
  size_t n = (size_t)c->features * c->hidden;
  int32_t header[4] = {(int32_t)kVersion, c->features, c->hidden, c->classes};
  uint8_t *at = put(blob, kMagic, 4);
  at = put(at, header, sizeof(header));
  at = put(at, head->w1, sizeof(float) * n);
  at = put(at, head->b1, sizeof(float) * c->hidden);
  at = put(at, head->w2, sizeof(float) * c->hidden * c->classes);
  at = put(at, head->b2, sizeof(float) * c->classes);
  at = put(at, head->mask, n);
  at = put(at, head->gradient_mask, n);
  uint32_t crc = sparcl_crc32(blob, (size_t)(at - blob));
  put(at, &crc, sizeof(crc));
  return SPARCL_OK;
}

static const uint8_t *get(const uint8_t *at, void *data, size_t bytes) {
  memcpy(data, at, bytes);
  return at + bytes;
}

int sparcl_state_load(sparcl_head *head, const uint8_t *blob, size_t length) {
  const sparcl_head_config *c = &head->config;
  if (length != sparcl_state_bytes(c)) return SPARCL_ERROR_SIZE;
  int32_t header[4];
  if (memcmp(blob, kMagic, 4) != 0) return SPARCL_ERROR_FORMAT;
  memcpy(header, blob + 4, sizeof(header));
  if (header[0] != (int32_t)kVersion || header[1] != c->features || header[2] != c->hidden ||
      header[3] != c->classes)
    return SPARCL_ERROR_FORMAT;
  uint32_t stored;
  memcpy(&stored, blob + length - sizeof(stored), sizeof(stored));
  if (sparcl_crc32(blob, length - sizeof(stored)) != stored) return SPARCL_ERROR_CRC;
  size_t n = (size_t)c->features * c->hidden;
  const uint8_t *at = blob + 4 + sizeof(header);
  /* A blob a faulty writer made with a valid CRC: checked whole before the head changes. */
  size_t floats = n + c->hidden + (size_t)c->hidden * c->classes + c->classes;
  for (size_t i = 0; i < floats; ++i) {
    float value;
    memcpy(&value, at + sizeof(float) * i, sizeof(value));
    if (!isfinite(value)) return SPARCL_ERROR_FORMAT;
  }
  const uint8_t *masks = at + sizeof(float) * floats;
  for (size_t i = 0; i < n; ++i) {
    float weight;
    memcpy(&weight, at + sizeof(float) * i, sizeof(weight));
    if (masks[i] > 1 || masks[n + i] > 1 || (!masks[i] && weight != 0.0f))
      return SPARCL_ERROR_FORMAT;
  }
  at = get(at, head->w1, sizeof(float) * n);
  at = get(at, head->b1, sizeof(float) * c->hidden);
  at = get(at, head->w2, sizeof(float) * c->hidden * c->classes);
  at = get(at, head->b2, sizeof(float) * c->classes);
  at = get(at, head->mask, n);
  get(at, head->gradient_mask, n);
  return SPARCL_OK;
}
