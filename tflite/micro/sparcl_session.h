/* The board's task loop: tasks learned as they come, under the session plan's policy and random
 * stream, step for step what the Python task loop (sparcl_tf/session/loop.py) does with the TFLM
 * head engine (sparcl_tf/micro/session.py): each epoch's example order, the plan's mask updates
 * and data-removal stages at their positions, the DGM refresh cadence, the learning-rate
 * schedule, replay draws from the feature buffer, per-example statistics for removal, and
 * evaluation. tests/test_micro_c.py holds it to the Python micro engine's trace on a 3-task
 * stream (board_session.c runs it on the host).
 *
 * C99, no allocation, no recursion: the caller gives the head, the buffer and one arena
 * (sparcl_session_arena_bytes). Everything the loop keeps between calls is plain data (the
 * progress struct and the arena, beside the head and the buffer), so a board that writes those
 * to flash can be switched off anywhere and go on. */
#ifndef SPARCL_SESSION_H_
#define SPARCL_SESSION_H_

#include <stddef.h>
#include <stdint.h>

#include "sparcl_micro.h"
#include "sparcl_policy.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { SPARCL_CANCELLED = 1, SPARCL_ERROR_DATA = -4, SPARCL_ERROR_DIVERGED = -5 };
enum { SPARCL_LR_CONSTANT = 0, SPARCL_LR_COSINE = 1, SPARCL_LR_STEP = 2 };
#define SPARCL_MAX_MILESTONES 8
#define SPARCL_MAX_DRAWS 2

/* The plan's `learning_rate` (sparcl_tf/session/learning_rate.py), over each task's progress. */
typedef struct {
  int schedule; /* SPARCL_LR_* */
  double base, final_fraction, gamma;
  int milestones;
  double milestone[SPARCL_MAX_MILESTONES];
} sparcl_learning_rate;

double sparcl_learning_rate_value(const sparcl_learning_rate *rate, double progress);

typedef struct {
  sparcl_policy policy;  /* one layer: the head's w1 (layer_units = F * H) */
  sparcl_learning_rate learning_rate;  /* the batch size is the policy's */
  int replay_rows, replay_draws, replay_from_task; /* one draw per term; 0 draws: no replay */
  sparcl_replay_term terms[SPARCL_MAX_DRAWS];
  int dgm_refresh_every;  /* steps between gradient-mask refreshes; 0: never */
  float importance_lambda;
  int grow;               /* SPARCL_GROW_* */
  int max_examples;       /* the largest task the arena holds */
} sparcl_session_config;

/* One task's training data, owned by the caller; give the same again to go on after
 * SPARCL_CANCELLED. ids: distinct, >= 0 (they name examples in records). */
typedef struct {
  int examples;
  const int8_t *features; /* [examples * F] */
  const int32_t *labels;  /* [examples] */
  const int32_t *ids;     /* [examples] */
  const int32_t *classes; /* the task's classes (the loss's class mask) */
  int num_classes;
} sparcl_task_data;

/* Where the session stands; plain data. */
typedef struct {
  int task;             /* tasks finished */
  int in_task;          /* 1: task `task` has begun and not finished */
  int examples;         /* training examples of the task in progress */
  int epoch, cursor, events_done, epoch_length; /* epoch_length -1: the epoch's order not made */
  int refresh_pending, steps_since_refresh;
  int removed;          /* examples removed from the task in progress */
  int64_t global_step;
} sparcl_progress;

enum { SPARCL_RECORD_STEP = 0, SPARCL_RECORD_MASK_UPDATE = 1, SPARCL_RECORD_REMOVAL = 2 };

/* What the loop reports (sparcl_tf/session/trace.py's records). */
typedef struct {
  int kind, task;
  int64_t step;          /* step: the global step */
  float loss;            /* step */
  int update, active;    /* mask update: its index in the task, active weights after */
  int stage, count;      /* removal: the stage and the examples it removed ... */
  const int32_t *ids;    /* ... by id, in removal order */
} sparcl_record;

typedef struct {
  sparcl_session_config config;
  sparcl_head *head;
  sparcl_buffer *buffer; /* NULL without replay */
  sparcl_progress progress;
  void (*record)(void *context, const sparcl_record *record); /* NULL: no records */
  int (*cancelled)(void *context); /* asked after every step; NULL: never */
  void *context;
  /* carved from the arena (sparcl_session.c) */
  int32_t *order, *rows, *permutation, *ranked;
  uint8_t *removed;
  int32_t *presentations, *correct, *last_correct, *forgetting_events;
  float *last_margin;
  sparcl_event *events;
  int32_t *prune_to, *grow_to, *mask_order;
  int8_t *batch_x, *replay_x;
  int32_t *batch_rows, *batch_labels, *replay_labels;
  float *batch_logits, *replay_logits, *class_mask, *scratch;
  uint8_t *batch_correct;
  int num_events;
} sparcl_session;

/* Bytes of arena a session of `config` over `head` needs. */
size_t sparcl_session_arena_bytes(const sparcl_session_config *config,
                                  const sparcl_head_config *head);

/* Sets `session` up at the start of a stream (progress zero; the arena's content is kept, so a
 * board that restores progress and arena from flash after this goes on where it stopped).
 * SPARCL_ERROR_SIZE when the arena is too small, SPARCL_ERROR_DATA for a config it cannot run. */
int sparcl_session_init(sparcl_session *session, const sparcl_session_config *config,
                        sparcl_head *head, sparcl_buffer *buffer, void *arena, size_t bytes);

/* Trains the next task (task index progress.task) on `data`, or goes on with the one in
 * progress. SPARCL_OK when it finished; SPARCL_CANCELLED when `cancelled` said so (call again
 * with the same data); SPARCL_ERROR_DATA when the data is not a task this session can train
 * (nothing changed); SPARCL_ERROR_DIVERGED when a loss turned non-finite (restore the head from
 * its last saved state). */
int sparcl_session_train_task(sparcl_session *session, const sparcl_task_data *data);

/* Hits of the head on `rows` test examples: argmax over every class (class-IL) and over
 * `classes` (task-IL), ties to the first, as numpy. */
void sparcl_session_evaluate(sparcl_session *session, const int8_t *features,
                             const int32_t *labels, int rows, const int32_t *classes,
                             int num_classes, int *class_hits, int *task_hits);

#ifdef __cplusplus
}
#endif

#endif /* SPARCL_SESSION_H_ */
