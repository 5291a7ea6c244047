/* Host unit tests of the board code: one train step against a golden step written by the Python
 * head (tests/test_micro_c.py writes the file and runs this binary), the mask update's exact
 * counts and zeros, the reservoir buffer, and the state blob (round trip, corruption caught).
 * Usage: test_sparcl_micro [GOLDEN_FILE]; without one, the checks that need no Python run.
 * Exit 0 when every check passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "sparcl_micro.h"
#include "sparcl_session.h"
#include "test_check.h"

static void *read_exact(FILE *f, size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (fread(p, 1, bytes, f) != bytes) {
    fprintf(stderr, "golden file too short\n");
    exit(2);
  }
  return p;
}

static double relative_error(const float *a, const float *b, int n) {
  double diff = 0, norm = 0;
  for (int i = 0; i < n; ++i) {
    diff += (double)(a[i] - b[i]) * (a[i] - b[i]);
    norm += (double)b[i] * b[i];
  }
  return sqrt(diff) / (norm > 0 ? sqrt(norm) : 1e-12);
}

static uint32_t xorshift(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void test_mask_update_and_state(sparcl_head *trained);
static void test_bad_state_blobs(sparcl_head *head, const uint8_t *good, size_t bytes);

static void test_golden_step(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
  int32_t *h = read_exact(f, 9 * sizeof(int32_t));
  int F = h[0], H = h[1], C = h[2], B = h[3], R = h[4], D = h[5], refresh = h[8];
  float *fl = read_exact(f, 4 * sizeof(float));
  sparcl_head_config config = {F, H, C, fl[0], h[6], fl[1], h[7], fl[3]};
  float replay_weight = fl[2];
  sparcl_replay_term terms[4];
  for (int d = 0; d < D; ++d) {
    int32_t *kind = read_exact(f, sizeof(int32_t));
    float *weight = read_exact(f, sizeof(float));
    terms[d].kind = *kind;
    terms[d].weight = *weight;
  }
  int8_t *x = read_exact(f, (size_t)B * F);
  int32_t *labels = read_exact(f, sizeof(int32_t) * B);
  float *class_mask = read_exact(f, sizeof(float) * C);
  int8_t *rx = read_exact(f, (size_t)D * R * F);
  int32_t *rlabels = read_exact(f, sizeof(int32_t) * D * R);
  float *rlogits = read_exact(f, sizeof(float) * D * R * C);
  sparcl_head head;
  memset(&head, 0, sizeof(head));
  head.config = config;
  head.w1 = read_exact(f, sizeof(float) * F * H);
  head.b1 = read_exact(f, sizeof(float) * H);
  head.w2 = read_exact(f, sizeof(float) * H * C);
  head.b2 = read_exact(f, sizeof(float) * C);
  head.mask = read_exact(f, (size_t)F * H);
  head.gradient_mask = read_exact(f, (size_t)F * H);
  head.last_gradient = malloc(sizeof(float) * F * H);
  float *want_w1 = read_exact(f, sizeof(float) * F * H), *want_b1 = read_exact(f, sizeof(float) * H);
  float *want_w2 = read_exact(f, sizeof(float) * H * C), *want_b2 = read_exact(f, sizeof(float) * C);
  uint8_t *want_gmask = read_exact(f, (size_t)F * H);
  float *want_loss = read_exact(f, sizeof(float));
  float *want_logits = read_exact(f, sizeof(float) * B * C);
  uint8_t *want_correct = read_exact(f, (size_t)B);
  float *want_gradient = read_exact(f, sizeof(float) * F * H);
  /* a TDM mask update the Python head made (prune_and_grow with the plan's growth hash) */
  int32_t *update = read_exact(f, 3 * sizeof(int32_t));
  float *update_lambda = read_exact(f, sizeof(float));
  float *update_w1 = read_exact(f, sizeof(float) * F * H);  /* read in file order */
  uint8_t *update_mask = read_exact(f, (size_t)F * H);
  float *update_gradient = read_exact(f, sizeof(float) * F * H);
  uint8_t *want_mask = read_exact(f, (size_t)F * H);
  sparcl_head updated = {config, update_w1, head.b1, head.w2, head.b2, update_mask,
                         head.gradient_mask, update_gradient};
  fclose(f);
  int32_t *order = malloc(sizeof(int32_t) * F * H);
  CHECK(sparcl_update_mask(&updated, update[1], update[2], *update_lambda,
                           SPARCL_GROW_RANDOM, update[0], order) ==
        update[2], "golden update count");
  int mask_differs = 0;
  for (int i = 0; i < F * H; ++i) {
    mask_differs += updated.mask[i] != want_mask[i];
    CHECK(updated.mask[i] || updated.w1[i] == 0.0f, "golden update: masked w1[%d] not zero", i);
  }
  CHECK(mask_differs == 0, "golden update: %d mask entries differ from Python's", mask_differs);

  sparcl_replay_draw draws[4];
  for (int d = 0; d < D; ++d) {
    draws[d].features = rx + (size_t)d * R * F;
    draws[d].labels = rlabels + d * R;
    draws[d].logits = rlogits + (size_t)d * R * C;
  }
  float *scratch = malloc(sizeof(float) * sparcl_scratch_floats(&config, B > R ? B : R));
  float *logits = malloc(sizeof(float) * B * C);
  uint8_t *correct = malloc((size_t)B);
  float loss = sparcl_head_train_step(&head, x, labels, B, class_mask, draws, terms, D, R,
                                      replay_weight, refresh, logits, correct, scratch);
  CHECK(fabsf(loss - *want_loss) <= 1e-5f * fabsf(*want_loss), "loss %.8g vs %.8g", loss,
        *want_loss);
  CHECK(relative_error(head.w1, want_w1, F * H) < 1e-5, "w1 %.3g", relative_error(head.w1, want_w1, F * H));
  CHECK(relative_error(head.b1, want_b1, H) < 1e-5, "b1 %.3g", relative_error(head.b1, want_b1, H));
  CHECK(relative_error(head.w2, want_w2, H * C) < 1e-5, "w2 %.3g", relative_error(head.w2, want_w2, H * C));
  CHECK(relative_error(head.b2, want_b2, C) < 1e-5, "b2 %.3g", relative_error(head.b2, want_b2, C));
  CHECK(relative_error(logits, want_logits, B * C) < 1e-5, "logits");
  CHECK(relative_error(head.last_gradient, want_gradient, F * H) < 1e-4, "gradient %.3g",
        relative_error(head.last_gradient, want_gradient, F * H));
  int differing = 0, kept = 0;
  for (int i = 0; i < F * H; ++i) {
    differing += head.gradient_mask[i] != want_gmask[i];
    kept += head.gradient_mask[i];
    CHECK(head.mask[i] || head.w1[i] == 0.0f, "masked w1[%d] = %g", i, head.w1[i]);
  }
  /* the threshold sits between gradient values that agree to ~1e-7: at most a tie may flip */
  CHECK(differing <= 1, "%d gradient-mask entries differ", differing);
  CHECK(!refresh || kept <= config.gradient_keep, "gradient mask keeps %d > %d", kept,
        config.gradient_keep);
  for (int r = 0; r < B; ++r) CHECK(correct[r] == want_correct[r], "correct[%d]", r);
  printf("golden step: loss %.7g (python %.7g), w1 rel %.2g, gradient-mask entries differing %d\n",
         loss, *want_loss, relative_error(head.w1, want_w1, F * H), differing);
  test_mask_update_and_state(&head);
}

/* TDM update on a head: exact counts, the least important weights dropped, zeros where masked,
 * grown weights at 0; then the state blob round trip and its corruption checks. */
static void test_mask_update_and_state(sparcl_head *trained) {
  sparcl_head head = *trained;
  sparcl_head_config config = head.config;
  int F = config.features, H = config.hidden, C = config.classes;
  int32_t *order = malloc(sizeof(int32_t) * F * H);
  uint8_t *before = malloc((size_t)F * H);
  memcpy(before, head.mask, (size_t)F * H);
  float *importance = malloc(sizeof(float) * F * H);
  int active = 0;
  for (int i = 0; i < F * H; ++i) {
    active += head.mask[i];
    importance[i] = fabsf(head.w1[i]) + 0.5f * (head.mask[i] ? fabsf(head.last_gradient[i]) : 0.0f);
  }
  int prune_to = active - active / 10, grow_to = active;
  sparcl_head pruned = head; /* pruning alone, on copies: growth may take a dropped one back */
  pruned.w1 = malloc(sizeof(float) * F * H);
  pruned.mask = malloc((size_t)F * H);
  pruned.last_gradient = malloc(sizeof(float) * F * H);
  memcpy(pruned.w1, head.w1, sizeof(float) * F * H);
  memcpy(pruned.mask, head.mask, (size_t)F * H);
  memcpy(pruned.last_gradient, head.last_gradient, sizeof(float) * F * H);
  CHECK(sparcl_update_mask(&pruned, prune_to, prune_to, 0.5f, SPARCL_GROW_RANDOM, 7, order) == prune_to, "prune count");
  float least_kept = INFINITY, most_dropped = -INFINITY;
  for (int i = 0; i < F * H; ++i) {
    if (!before[i]) continue;
    if (pruned.mask[i]) least_kept = fminf(least_kept, importance[i]);
    else most_dropped = fmaxf(most_dropped, importance[i]);
  }
  CHECK(most_dropped <= least_kept, "dropped importance %g above kept %g", most_dropped, least_kept);
  CHECK(sparcl_update_mask(&head, prune_to, grow_to, 0.5f, SPARCL_GROW_RANDOM, 7, order) == grow_to, "grow count");
  int now = 0, survivors = 0;
  for (int i = 0; i < F * H; ++i) {
    now += head.mask[i];
    survivors += head.mask[i] && before[i];
    CHECK(head.mask[i] || head.w1[i] == 0.0f, "w1 not zero at a masked position");
    if (head.mask[i] && !before[i]) CHECK(head.w1[i] == 0.0f, "grown weight not zero");
  }
  CHECK(now == grow_to, "active %d != %d", now, grow_to);
  CHECK(survivors >= prune_to, "survivors %d < %d", survivors, prune_to);

  /* state blob round trip and corruption */
  size_t bytes = sparcl_state_bytes(&config);
  uint8_t *blob = malloc(bytes);
  CHECK(sparcl_state_save(&head, blob, bytes - 1) == SPARCL_ERROR_SIZE, "small blob accepted");
  CHECK(sparcl_state_save(&head, blob, bytes) == SPARCL_OK, "save");
  sparcl_head copy;
  memset(&copy, 0, sizeof(copy));
  copy.config = config;
  copy.w1 = calloc(F * H, sizeof(float)); copy.b1 = calloc(H, sizeof(float));
  copy.w2 = calloc(H * C, sizeof(float)); copy.b2 = calloc(C, sizeof(float));
  copy.mask = calloc(F * H, 1); copy.gradient_mask = calloc(F * H, 1);
  CHECK(sparcl_state_load(&copy, blob, bytes) == SPARCL_OK, "load");
  CHECK(memcmp(copy.w1, head.w1, sizeof(float) * F * H) == 0, "w1 round trip");
  CHECK(memcmp(copy.mask, head.mask, (size_t)F * H) == 0, "mask round trip");
  CHECK(memcmp(copy.w2, head.w2, sizeof(float) * H * C) == 0, "w2 round trip");
  test_bad_state_blobs(&copy, blob, bytes);
}

/* The board loader's bad-input table: each row spoils a good blob one way; the load must give
 * the row's code and leave the head as it was. Rows that keep the CRC valid (what a faulty
 * writer would make) reseal the blob after spoiling it. */
typedef struct {
  const char *name;
  size_t offset;     /* byte spoiled (from the start; SIZE_MAX: none) */
  uint8_t value;     /* written there */
  long length_change;
  int reseal;        /* recompute the CRC after spoiling */
  int expected;
} blob_row;

static void test_bad_state_blobs(sparcl_head *head, const uint8_t *good, size_t bytes) {
  const sparcl_head_config *c = &head->config;
  size_t n = (size_t)c->features * c->hidden, header = 4 + 4 * sizeof(int32_t);
  size_t masks = header + sizeof(float) * (n + c->hidden + (size_t)c->hidden * c->classes +
                                           c->classes);
  size_t first_pruned = SIZE_MAX;
  for (size_t i = 0; i < n && first_pruned == SIZE_MAX; ++i)
    if (!good[masks + i]) first_pruned = i;
  const blob_row rows[] = {
      {"one byte short", SIZE_MAX, 0, -1, 0, SPARCL_ERROR_SIZE},
      {"one byte long", SIZE_MAX, 0, 1, 0, SPARCL_ERROR_SIZE},
      {"empty", SIZE_MAX, 0, -(long)bytes, 0, SPARCL_ERROR_SIZE},
      {"magic", 0, 'X', 0, 0, SPARCL_ERROR_FORMAT},
      {"version", 4, 9, 0, 1, SPARCL_ERROR_FORMAT},
      {"features", 8, 1, 0, 1, SPARCL_ERROR_FORMAT},
      {"hidden", 12, 1, 0, 1, SPARCL_ERROR_FORMAT},
      {"classes", 16, 1, 0, 1, SPARCL_ERROR_FORMAT},
      {"a weight's byte (CRC)", header + 2, 0x55, 0, 0, SPARCL_ERROR_CRC},
      {"the CRC itself", bytes - 1, 0x00, 0, 0, SPARCL_ERROR_CRC},
      {"NaN weight", header + 3, 0x7F, 0, 1, SPARCL_ERROR_FORMAT}, /* with 0xFF below */
      {"mask byte 2", masks, 2, 0, 1, SPARCL_ERROR_FORMAT},
      {"gradient-mask byte 7", masks + n, 7, 0, 1, SPARCL_ERROR_FORMAT},
      {"weight where the mask is 0", header + 4 * first_pruned + 3, 0x3F, 0, 1,
       SPARCL_ERROR_FORMAT},
  };
  size_t floats_before = sizeof(float) * n;
  float *w1 = malloc(floats_before);
  uint8_t *mask = malloc(n);
  uint8_t *blob = malloc(bytes + 1);
  for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); ++r) {
    const blob_row *row = &rows[r];
    memcpy(blob, good, bytes);
    blob[bytes] = 0;
    if (row->offset != SIZE_MAX) blob[row->offset] = row->value;
    if (row->offset == header + 3 && row->value == 0x7F) blob[header + 2] = 0xFF; /* NaN */
    if (row->reseal) {
      uint32_t crc = sparcl_crc32(blob, bytes - sizeof(crc));
      memcpy(blob + bytes - sizeof(crc), &crc, sizeof(crc));
    }
    memcpy(w1, head->w1, floats_before);
    memcpy(mask, head->mask, n);
    int code = sparcl_state_load(head, blob, (size_t)((long)bytes + row->length_change));
    CHECK(code == row->expected, "blob row '%s': code %d, expected %d", row->name, code,
          row->expected);
    CHECK(memcmp(w1, head->w1, floats_before) == 0 && memcmp(mask, head->mask, n) == 0,
          "blob row '%s' changed the head", row->name);
  }
  CHECK(first_pruned != SIZE_MAX, "the table needs a pruned weight");
  CHECK(sparcl_state_load(head, good, bytes) == SPARCL_OK, "the good blob no longer loads");
  free(w1);
  free(mask);
  free(blob);
}

/* Without a golden file: a deterministic synthetic head trained a few steps, then the same
 * mask and state checks (what `bazel test` runs; the golden comparison needs Python). */
static void test_synthetic_head(void) {
  enum { F = 12, H = 8, C = 4, B = 6 };
  static float w1[F * H], b1[H], w2[H * C], b2[C], last[F * H], scratch[B * (F + 3 * H + 2 * C) + H + H * C + C];
  static uint8_t mask[F * H], gmask[F * H], correct[B];
  static int8_t x[B * F];
  int32_t labels[B];
  float class_mask[C] = {1, 1, 0, 0}, logits[B * C];
  uint32_t rng = 99;
  for (int i = 0; i < F * H; ++i) {
    w1[i] = (float)((int)(xorshift(&rng) % 2001) - 1000) / 4000.0f;
    mask[i] = xorshift(&rng) % 2;
    gmask[i] = 1;
    if (!mask[i]) w1[i] = 0.0f;
  }
  for (int i = 0; i < H * C; ++i) w2[i] = (float)((int)(xorshift(&rng) % 2001) - 1000) / 3000.0f;
  for (int i = 0; i < B * F; ++i) x[i] = (int8_t)((int)(xorshift(&rng) % 255) - 127);
  for (int r = 0; r < B; ++r) labels[r] = r % 2;
  sparcl_head_config config = {F, H, C, 0.05f, 0, 0.1f, F * H / 4, 1.0f};
  sparcl_head head = {config, w1, b1, w2, b2, mask, gmask, last};
  CHECK(sparcl_scratch_floats(&config, B) == sizeof(scratch) / sizeof(float), "scratch size");
  float first = 0, loss = 0;
  for (int step = 0; step < 30; ++step) {
    loss = sparcl_head_train_step(&head, x, labels, B, class_mask, NULL, NULL, 0, 0, 0.0f,
                                  step % 10 == 0, logits, correct, scratch);
    if (step == 0) first = loss;
  }
  CHECK(loss < first, "30 steps did not lower the loss (%g -> %g)", first, loss);
  int kept = 0;
  for (int i = 0; i < F * H; ++i) {
    kept += gmask[i];
    CHECK(mask[i] || w1[i] == 0.0f, "masked weight moved");
    CHECK(mask[i] || !gmask[i], "gradient mask outside the weight mask");
  }
  CHECK(kept <= F * H / 4, "gradient mask keeps %d", kept);
  test_mask_update_and_state(&head);
}

static void test_reservoir(void) {
  enum { CAP = 10, F = 4, C = 3 };
  int8_t x[CAP * F], rx[6 * F];
  int32_t y[CAP], ry[6], order[CAP];
  float logits[CAP * C], rl[6 * C];
  sparcl_buffer buffer = {CAP, F, C, 12345u, 0, x, y, logits, order};
  int counts[CAP + 90] = {0};
  for (int i = 0; i < 100; ++i) {
    int8_t features[F] = {(int8_t)i, 0, 0, 0};
    float l[C] = {(float)i, 0, 0};
    sparcl_buffer_add(&buffer, features, i, l);
    CHECK(sparcl_buffer_size(&buffer) == (i + 1 < CAP ? i + 1 : CAP), "size");
  }
  CHECK(buffer.seen == 100, "seen");
  for (int s = 0; s < CAP; ++s) {
    CHECK(x[s * F] == (int8_t)y[s] && logits[s * C] == (float)y[s], "slot %d mixed up", s);
    ++counts[y[s]];
  }
  for (int i = 0; i < 100; ++i) CHECK(counts[i] <= 1, "example %d stored twice", i);
  sparcl_buffer_sample(&buffer, 6, 3, 1, rx, ry, rl);
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < i; ++j) CHECK(ry[i] != ry[j], "sample not distinct");
    CHECK(rx[i * F] == (int8_t)ry[i] && rl[i * C] == (float)ry[i], "sample rows mixed up");
  }
  CHECK(sparcl_buffer_bytes_per_example(32, 10) == 73, "bytes per example");
}

/* The buffer against the Python host's (sparcl_tf/replay/buffer.py) on the same offers: where
 * each example goes and what each draw takes. File: int32 seed, capacity, classes, offers, the
 * offered labels, the labels per slot after them, draws, and per draw step, draw, rows and the
 * labels drawn. Features and logits carry the label, so rows cannot mix up. */
static void test_golden_buffer(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
  int32_t *h = read_exact(f, 4 * sizeof(int32_t));
  int capacity = h[1], classes = h[2], offers = h[3];
  int32_t *offered = read_exact(f, sizeof(int32_t) * offers);
  int32_t *want_slots = read_exact(f, sizeof(int32_t) * capacity);
  int8_t *x = calloc((size_t)capacity, 1), rx[64];
  int32_t *y = calloc((size_t)capacity, sizeof(int32_t)), *order = calloc((size_t)capacity, sizeof(int32_t)), ry[64];
  float *logits = calloc((size_t)capacity * classes, sizeof(float)), rl[64 * 8];
  sparcl_buffer buffer = {capacity, 1, classes, (uint64_t)h[0], 0, x, y, logits, order};
  for (int i = 0; i < offers; ++i) {
    int8_t features = (int8_t)offered[i];
    float row[8] = {(float)offered[i]};
    sparcl_buffer_add(&buffer, &features, offered[i], row);
  }
  for (int s = 0; s < capacity; ++s)
    CHECK(y[s] == want_slots[s] && x[s] == (int8_t)y[s], "slot %d holds %d, Python's %d", s, y[s], want_slots[s]);
  int32_t *count = read_exact(f, sizeof(int32_t));
  for (int d = 0; d < *count; ++d) {
    int32_t *draw = read_exact(f, 3 * sizeof(int32_t));
    int32_t *want = read_exact(f, sizeof(int32_t) * draw[2]);
    sparcl_buffer_sample(&buffer, draw[2], draw[0], draw[1], rx, ry, rl);
    for (int i = 0; i < draw[2]; ++i)
      CHECK(ry[i] == want[i] && rx[i] == (int8_t)ry[i], "draw (%d, %d) row %d: %d, Python's %d",
            draw[0], draw[1], i, ry[i], want[i]);
  }
  fclose(f);
  printf("golden buffer: %d slots, %d draws equal\n", capacity, *count);
}

/* Counts records by kind (removals by the examples they removed). */
static void count_records(void *context, const sparcl_record *r) {
  int *counts = context;
  counts[r->kind] += r->kind == SPARCL_RECORD_REMOVAL ? r->count : 1;
}

/* The task loop on made-up data: bad tasks refused with nothing changed, then two tasks with
 * exact step, removal and active counts, and evaluation above chance. */
static void test_synthetic_session(void) {
  enum { F = 8, H = 8, C = 4, B = 5, R = 5, N = 43, CAP = 20 };
  static float w1[F * H], b1[H], w2[H * C], b2[C], last[F * H];
  static uint8_t mask[F * H], gmask[F * H];
  static int8_t x[N * F], bx[CAP * F];
  static int32_t labels[N], ids[N], by[CAP], border[CAP];
  static float blogits[CAP * C];
  uint32_t rng = 7;
  for (int i = 0; i < F * H; ++i) {
    w1[i] = (float)((int)(xorshift(&rng) % 2001) - 1000) / 3000.0f;
    mask[i] = gmask[i] = 1;
  }
  for (int i = 0; i < H * C; ++i) w2[i] = (float)((int)(xorshift(&rng) % 2001) - 1000) / 3000.0f;
  for (int r = 0; r < N; ++r) {
    labels[r] = r % 2;
    ids[r] = 100 + r;
    for (int f = 0; f < F; ++f)
      x[r * F + f] = (int8_t)((f % 2 == labels[r] ? 60 : -60) + (int)(xorshift(&rng) % 41) - 20);
  }
  sparcl_head head = {{F, H, C, 0.02f, 0, 0.0f, F * H / 2, 1.0f}, w1, b1, w2, b2, mask, gmask,
                      last};
  int32_t units[1] = {F * H};
  double targets[1] = {0.5};
  sparcl_session_config config;
  memset(&config, 0, sizeof(config));
  config.policy = (sparcl_policy){.seed = 3, .epochs_per_task = 2, .batch_size = B,
                                  .updates_per_task = 2,
                                  .mask_rule = SPARCL_RULE_TDM, .removal_fraction = 0.5,
                                  .removal_stages = 2, .layers = 1, .layer_units = units,
                                  .layer_targets = targets, .open_fraction = 0.05,
                                  .swap_fraction = 0.05, .rigl_horizon_tasks = 1};
  config.learning_rate.base = 0.1;
  config.replay_rows = R;
  config.replay_draws = 1;
  config.terms[0] = (sparcl_replay_term){SPARCL_TERM_CE, 1.0f};
  config.dgm_refresh_every = 2;
  config.importance_lambda = 0.5f;
  config.max_examples = N;
  sparcl_buffer buffer = {CAP, F, C, 3, 0, bx, by, blogits, border};
  static uint8_t arena[65536];
  sparcl_session s;
  size_t need = sparcl_session_arena_bytes(&config, &head.config);
  CHECK(need <= sizeof(arena), "arena %zu", need);
  CHECK(sparcl_session_init(&s, &config, &head, &buffer, arena, need - 8 - 1) == SPARCL_ERROR_SIZE,
        "small arena accepted");
  CHECK(sparcl_session_init(&s, &config, &head, &buffer, arena, sizeof(arena)) == SPARCL_OK, "init");
  int counts[3] = {0, 0, 0};
  s.record = count_records, s.context = counts;
  int32_t classes[2] = {0, 1}, bad_classes[1] = {C};
  sparcl_task_data task = {N, x, labels, ids, classes, 2};
  sparcl_task_data bad[4] = {task, task, task, task};
  bad[0].examples = B - 1;
  bad[1].classes = bad_classes, bad[1].num_classes = 1;
  static int32_t bad_labels[N], bad_ids[N];
  memcpy(bad_labels, labels, sizeof(labels));
  bad_labels[N - 1] = C;
  bad[2].labels = bad_labels;
  memcpy(bad_ids, ids, sizeof(ids));
  bad_ids[N - 1] = ids[3];
  bad[3].ids = bad_ids;
  for (int i = 0; i < 4; ++i)
    CHECK(sparcl_session_train_task(&s, &bad[i]) == SPARCL_ERROR_DATA && s.progress.task == 0 &&
          s.progress.global_step == 0 && !s.progress.in_task && buffer.seen == 0,
          "bad task %d not refused cleanly", i);
  for (int t = 0; t < 2; ++t)
    CHECK(sparcl_session_train_task(&s, &task) == SPARCL_OK, "task %d", t);
  /* 2 epochs a task, full batches of what is kept; of the 22 (half of 43) planned for 2
     stages only stage 1 comes (at the second of 2 updates, epoch 1's start): 11 removed, so
     epoch 1 trains floor(32 / 5) batches */
  int removed = (2 * 22 * 1 + 2) / 4;
  int per_task = N / B + (N - removed) / B;
  CHECK(s.progress.task == 2 && s.progress.global_step == 2 * per_task, "steps %lld, want %d",
        (long long)s.progress.global_step, 2 * per_task);
  CHECK(counts[SPARCL_RECORD_STEP] == 2 * per_task, "step records");
  CHECK(counts[SPARCL_RECORD_MASK_UPDATE] == 4, "mask updates %d", counts[1]);
  CHECK(counts[SPARCL_RECORD_REMOVAL] == 2 * removed, "removed %d", counts[2]);
  int active = 0;
  for (int i = 0; i < F * H; ++i) active += mask[i];
  CHECK(active == sparcl_active_count(F * H, 0.5), "active %d", active);
  CHECK(buffer.seen == (uint32_t)(2 * per_task * B), "buffer saw %u", buffer.seen);
  int class_hits, task_hits;
  sparcl_session_evaluate(&s, x, labels, N, classes, 2, &class_hits, &task_hits);
  CHECK(task_hits >= N * 3 / 4 && class_hits <= task_hits, "hits %d / %d", task_hits, class_hits);
}

int main(int argc, char **argv) {
  if (argc > 3) { fprintf(stderr, "usage: %s [GOLDEN_STEP [GOLDEN_BUFFER]]\n", argv[0]); return 2; }
  if (argc >= 2) test_golden_step(argv[1]);
  if (argc == 3) test_golden_buffer(argv[2]);
  test_synthetic_head();
  test_reservoir();
  test_synthetic_session();
  if (failures) { fprintf(stderr, "%d check(s) failed\n", failures); return 1; }
  printf("all checks passed\n");
  return 0;
}
