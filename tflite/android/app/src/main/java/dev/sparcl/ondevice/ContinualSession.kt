package dev.sparcl.ondevice

import java.io.File
import org.json.JSONArray
import org.json.JSONObject

/**
 * A whole continual-learning session on the device, step for step the Python task loop
 * (`sparcl_tf/session/loop.py`) following the model's session plan: each epoch's example order,
 * replay draws and augmentation from the portable stream, the plan's mask updates and data-removal
 * stages at their positions, the DGM refresh cadence, momentum reset per task, evaluation after
 * every task. State files in [stateDir] at every epoch and task end and every
 * [checkpointEverySteps] steps; constructing a session on a folder that holds one resumes it.
 * [records] receives the session's trace (steps, mask updates, removals, task ends) as JSON.
 */
class ContinualSession(
    private val model: SparclModel, private val plan: SessionPlan, private val stream: TaskStream,
    stateDir: File, private val checkpointEverySteps: Int = 0, private val records: (JSONObject) -> Unit = {},
) {
    private val numTasks: Int get() = stream.numTasks  // grows as an app's tasks arrive
    private val buffer: ReservoirBuffer?
    private val stats: ExampleStats
    private val augment = Augment(plan)
    private val files = StateFiles.of(stateDir, plan, model)
    private val momenta = model.stateSpec.keys.filter { it.startsWith("momentum__") }

    // Progress: where the session stands (all of it goes into every state file).
    private var task = 0
    private var epoch = 0
    private var epochOrder: IntArray? = null
    private var cursor = 0
    private var eventsDone = 0
    private val removed = mutableListOf<Int>()
    private var refreshPending = true
    private var stepsSinceRefresh = 0
    private var globalStep = 0L
    private var examplesPresented = 0L
    private var trainNanos = 0L
    private var removedBefore = 0L  // examples a host removed before handing the run over (HostState)
    private val losses = mutableListOf<Float>()
    private val classIl = mutableListOf<DoubleArray>()
    private val taskIl = mutableListOf<DoubleArray>()
    private val removedByTask = mutableListOf<IntArray>()
    private val activeAfterUpdates = mutableListOf<IntArray>()  // [task, update, active per layer...]

    private var cancelled: () -> Boolean = { false }
    private var taskExamples = mutableListOf<Int>()  // training examples of every task begun
    private var events = emptyList<PlanEvent>()  // this task's, from the plan's policy and the task's size
    private var classMask = FloatArray(0)
    private var replayOn = false

    init {
        buffer = if (plan.replayDraws > 0) ReservoirBuffer(plan.bufferSize, plan.imageSize, plan.numClasses, plan.seed) else null
        stats = ExampleStats(1)  // grown to each task's ids as it begins
        files.latest()?.let { restore(files.load(it)) }
    }

    val finished: Boolean get() = task >= numTasks

    /** The 0-based task the session trains next (or goes on with). */
    val nextTask: Int get() = task

    /**
     * Trains the remaining tasks (or stops after [stopAfterTask]); returns the results so far.
     * [cancelled] is asked between steps: when it says yes the session saves its state and throws
     * [TaskCancelled]; running again goes on from that step.
     */
    fun run(stopAfterTask: Int = Int.MAX_VALUE, cancelled: () -> Boolean = { false }): JSONObject {
        this.cancelled = cancelled
        while (task < numTasks && task <= stopAfterTask) {
            val data = stream.training(task)
            if (data.ids.size < plan.batchSize)
                throw SessionError("task $task has ${data.ids.size} training examples, fewer than batch_size=${plan.batchSize}")
            data.check("task ${task + 1} training data", plan.numClasses)
            stream.test(task).check("task ${task + 1} test data", plan.numClasses)
            stats.ensure((data.ids.maxOrNull() ?: -1) + 1)
            beginTask(data.ids.size)
            while (epoch < plan.epochsPerTask) {
                trainEpoch(data)
                if (epoch < plan.epochsPerTask) save()
            }
            endTask()
            save()
        }
        return results()
    }

    /** Starts (or resumes) a task: its events follow from the plan's policy and its size. */
    private fun beginTask(examples: Int) {
        if (epoch == 0 && epochOrder == null) {  // a fresh start of this task
            if (plan.momentumResetPerTask && momenta.isNotEmpty()) {
                val state = model.getState()
                model.setState(state.mapValues { (name, bytes) -> if (name in momenta) ByteArray(bytes.size) else bytes })
            }
            stats.reset()
            removed.clear()
        }
        while (taskExamples.size > task) taskExamples.removeAt(taskExamples.size - 1)
        taskExamples.add(examples)
        events = plan.taskEvents(task, examples)
        val classes = stream.classes(task).toSet()
        classMask = FloatArray(plan.numClasses) { if (it in classes) 1f else 0f }
        replayOn = plan.replayDraws > 0 && task >= plan.replayFromTask
    }

    private fun kept(data: TaskExamples): (Int) -> Boolean {
        val gone = removed.toHashSet()
        return { row -> data.ids[row] !in gone }
    }

    private fun trainEpoch(data: TaskExamples) {
        if (epochOrder == null) {
            val isKept = kept(data)
            val rows = data.ids.indices.filter(isKept).toIntArray()
            val order = SessionRandom(plan.seed, SessionRandom.EPOCH_ORDER, task.toLong(), epoch.toLong()).permutation(rows.size)
            epochOrder = IntArray(rows.size) { rows[order[it]] }
            cursor = 0; eventsDone = 0
            refreshPending = true  // fresh gradient masks at each epoch's start
        }
        val length = epochOrder!!.size
        for (event in events.filter { it.epoch == epoch }.drop(eventsDone)) {
            trainSegment(data, event.position(length))
            applyEvent(event, data)
            eventsDone += 1
        }
        trainSegment(data, length)
        epoch += 1
        epochOrder = null; cursor = 0; eventsDone = 0
    }

    /** The full batches of kept examples in [cursor, boundary); a partial batch waits for the next segment. */
    private fun trainSegment(data: TaskExamples, boundary: Int) {
        val order = epochOrder!!
        val isKept = kept(data)
        val positions = (cursor until boundary).filter { isKept(order[it]) }
        val batch = plan.batchSize
        for (b in 0 until positions.size / batch) {
            val rows = IntArray(batch) { order[positions[b * batch + it]] }
            step(data, rows)
            cursor = positions[b * batch + batch - 1] + 1
            if (checkpointEverySteps > 0 && globalStep % checkpointEverySteps == 0L) save()
            if (cancelled()) {
                save()
                throw TaskCancelled("task ${task + 1} was cancelled after step ${globalStep - 1}; its state is saved and the next run goes on from there")
            }
        }
    }

    private fun step(data: TaskExamples, rows: IntArray) {
        val images = data.images.prepare(rows, plan)
        val labels = IntArray(rows.size) { data.labels[rows[it]] }
        val ids = IntArray(rows.size) { data.ids[rows[it]] }
        val draws = plan.replayDraws
        val replayCount = plan.replayBatchSize
        val replayImages = FloatArray(draws * replayCount * plan.imageSize)
        val replayLabels = IntArray(draws * replayCount)
        val replayLogits = FloatArray(draws * replayCount * plan.numClasses)
        val on = replayOn && buffer!!.size > 0
        if (on) for (draw in 0 until draws) {
            val slots = buffer.sample(replayCount, globalStep, draw)
            val drawn = FloatArray(replayCount * plan.imageSize)
            for ((i, slot) in slots.withIndex()) {
                System.arraycopy(buffer.images, slot * plan.imageSize, drawn, i * plan.imageSize, plan.imageSize)
                replayLabels[draw * replayCount + i] = buffer.labels[slot]
                System.arraycopy(buffer.logits, slot * plan.numClasses, replayLogits, (draw * replayCount + i) * plan.numClasses, plan.numClasses)
            }
            System.arraycopy(augment.apply(drawn, replayCount, globalStep, draw + 1), 0, replayImages,
                draw * replayCount * plan.imageSize, drawn.size)
        }
        val every = plan.dgmRefreshEvery
        val refresh = every > 0 && (refreshPending || stepsSinceRefresh >= every)
        stepsSinceRefresh = if (refresh) 1 else stepsSinceRefresh + 1
        refreshPending = false
        val rate = plan.learningRate.value((epoch + cursor.toDouble() / epochOrder!!.size) / plan.epochsPerTask).toFloat()
        val started = System.nanoTime()
        val out = model.train(augment.apply(images, rows.size, globalStep, 0), labels, classMask,
            replayImages, replayLabels, replayLogits, if (on) 1f else 0f, refresh, rate)
        trainNanos += System.nanoTime() - started
        if (!out.loss.isFinite())
            throw SessionError("task $task step $globalStep: the loss is ${out.loss}; the run diverged (lower the learning rate)")
        buffer?.add(images, labels, out.logits, task, ids)
        stats.observe(ids, BooleanArray(rows.size) { out.correct[it] > 0f }, ExampleStats.margins(out.logits, labels, plan.numClasses))
        losses.add(out.loss)
        records(JSONObject().put("kind", "step").put("task", task).put("step", globalStep).put("loss", out.loss.toDouble()))
        globalStep += 1
        examplesPresented += rows.size
    }

    private fun applyEvent(event: PlanEvent, data: TaskExamples) {
        if (event.maskUpdate) {
            val active = model.updateMasks(event.pruneTo, event.growTo, event.seed)
            if (active.size != plan.sparseLayers.size) throw SessionError("update_masks returned ${active.size} counts for ${plan.sparseLayers.size} layers")
            activeAfterUpdates.add(intArrayOf(task, event.updateIndex) + active)
            refreshPending = true  // fresh gradient masks after every mask change
            records(JSONObject().put("kind", "mask_update").put("task", task).put("update", event.updateIndex).put("active", JSONArray(active.toList())))
        }
        if (event.removalStage > 0) {
            val isKept = kept(data)
            val candidates = data.ids.indices.filter(isKept).map { data.ids[it] }.toIntArray()
            // Cumulative plan: a stage that finds too few candidates leaves the rest to the next.
            val tieBreak = SessionRandom(plan.seed, SessionRandom.REMOVAL, task.toLong(), event.removalStage.toLong()).permutation(candidates.size)
            val chosen = stats.removals(candidates, tieBreak, event.removalTarget - removed.size)
            removed.addAll(chosen.toList())
            stats.reset()  // the next stage ranks by its own window
            records(JSONObject().put("kind", "removal").put("task", task).put("stage", event.removalStage).put("removed", JSONArray(chosen.toList())))
        }
    }

    private fun endTask() {
        val classRow = DoubleArray(task + 1) { Double.NaN }
        val taskRow = DoubleArray(task + 1) { Double.NaN }
        for (t in 0..task) {
            val test = stream.test(t)
            if (test.images.count == 0) continue  // no test set: not evaluated
            val (classHits, taskHits) = hits(test, stream.classes(t))
            classRow[t] = 100.0 * (classHits.toDouble() / test.images.count)
            taskRow[t] = 100.0 * (taskHits.toDouble() / test.images.count)
        }
        classIl.add(classRow); taskIl.add(taskRow)
        removedByTask.add(removed.toIntArray())
        records(JSONObject().put("kind", "task_end").put("task", task).put("class_il", row(classRow)).put("task_il", row(taskRow)))
        task += 1
        epoch = 0; epochOrder = null; cursor = 0; eventsDone = 0
    }

    /** Logits of [images], prepared and run a few batches at a time (bounded memory). */
    fun logits(images: ImageSet): FloatArray {
        val logits = FloatArray(images.count * plan.numClasses)
        val chunk = plan.batchSize * EVALUATION_BATCHES
        for (start in 0 until images.count step chunk) {
            val rows = IntArray(minOf(chunk, images.count - start)) { start + it }
            System.arraycopy(model.infer(images.prepare(rows, plan), rows.size), 0, logits, start * plan.numClasses, rows.size * plan.numClasses)
        }
        return logits
    }

    /** (class-IL hits, task-IL hits) on [examples]: argmax over every class, and over [classes]. */
    fun hits(examples: TaskExamples, classes: IntArray): Pair<Int, Int> {
        val logits = logits(examples.images)
        val allClasses = IntArray(plan.numClasses) { it }
        var classHits = 0
        var taskHits = 0
        for (row in 0 until examples.images.count) {
            val label = examples.labels[row]
            if (argmax(logits, row, allClasses) == label) classHits++
            if (argmax(logits, row, classes) == label) taskHits++
        }
        return classHits to taskHits
    }

    /** The first of [candidates] with the largest logit in [row] (numpy's argmax rule). */
    private fun argmax(logits: FloatArray, row: Int, candidates: IntArray): Int {
        var best = candidates[0]
        for (c in candidates) if (logits[row * plan.numClasses + c] > logits[row * plan.numClasses + best]) best = c
        return best
    }

    /** A matrix row as JSON, padded with nulls to the tasks known now (a learner's rows grow). */
    private fun row(values: DoubleArray) = JSONArray().also { array ->
        values.forEach { array.put(if (it.isNaN()) JSONObject.NULL else it) }
        repeat(maxOf(numTasks, task) - values.size) { array.put(JSONObject.NULL) }
    }

    /** The trainer's result keys where they mean the same (class_il, task_il: the last row's mean),
     *  plus what only a device run reports: removed ids per task, active counts after every mask
     *  update ([task, update, per layer...]) and every step's loss. */
    fun results(): JSONObject {
        val last = (classIl.lastOrNull() ?: DoubleArray(0)).filter { !it.isNaN() }
        val lastTask = (taskIl.lastOrNull() ?: DoubleArray(0)).filter { !it.isNaN() }
        return JSONObject()
            .put("tasks_done", task)
            .put("class_il", if (last.isEmpty()) JSONObject.NULL else last.average())
            .put("task_il", if (lastTask.isEmpty()) JSONObject.NULL else lastTask.average())
            .put("class_il_matrix", JSONArray().also { a -> classIl.forEach { a.put(row(it)) } })
            .put("task_il_matrix", JSONArray().also { a -> taskIl.forEach { a.put(row(it)) } })
            .put("steps", globalStep)
            .put("examples_presented", examplesPresented)
            .put("examples_removed", removedBefore + removedByTask.sumOf { it.size })
            .put("training_examples", taskExamples.sum())
            .put("train_time_s", trainNanos / 1e9)
            .put("train_step_ms", if (globalStep > 0) trainNanos / 1e6 / globalStep else 0.0)
            .put("removed_example_ids", JSONArray().also { a -> removedByTask.forEach { a.put(JSONArray(it.toList())) } })
            .put("active_after_mask_updates", JSONArray().also { a -> activeAfterUpdates.forEach { a.put(JSONArray(it.toList())) } })
            .put("losses", JSONArray().also { a -> losses.forEach { a.put(it.toDouble()) } })
    }

    // --- state files --------------------------------------------------------------------------

    private fun save() {
        val r = StateFiles.Records()
        r.ints["progress"] = intArrayOf(task, epoch, cursor, eventsDone, if (refreshPending) 1 else 0, stepsSinceRefresh)
        r.longs["counters"] = longArrayOf(globalStep, examplesPresented, trainNanos, removedBefore)
        epochOrder?.let { r.ints["epoch_order"] = it }
        r.ints["removed"] = removed.toIntArray()
        r.floats["losses"] = losses.toFloatArray()
        r.doubles["class_il"] = classIl.flatMap { it.toList() }.toDoubleArray()
        r.doubles["task_il"] = taskIl.flatMap { it.toList() }.toDoubleArray()
        r.ints["matrix_row_sizes"] = classIl.map { it.size }.toIntArray()
        r.ints["task_examples"] = taskExamples.toIntArray()
        r.ints["removed_by_task/sizes"] = removedByTask.map { it.size }.toIntArray()
        r.ints["removed_by_task"] = removedByTask.flatMap { it.toList() }.toIntArray()
        r.ints["active_after_mask_updates"] = activeAfterUpdates.flatMap { it.toList() }.toIntArray()
        r.ints["stats/presentations"] = stats.presentations
        r.ints["stats/correct"] = stats.correct
        r.ints["stats/last_correct"] = stats.lastCorrect
        r.ints["stats/forgetting_events"] = stats.forgettingEvents
        r.floats["stats/last_margin"] = stats.lastMargin
        buffer?.let { b ->
            r.floats["buffer/images"] = b.images; r.ints["buffer/labels"] = b.labels; r.floats["buffer/logits"] = b.logits
            r.ints["buffer/task_ids"] = b.taskIds; r.ints["buffer/example_ids"] = b.exampleIds; r.longs["buffer/seen"] = longArrayOf(b.seen)
        }
        for ((name, bytes) in model.getState()) r.bytes["model/$name"] = bytes
        files.save(r)
    }

    private fun restore(r: StateFiles.Records) {
        val p = r.int("progress")
        val counters = r.long("counters")
        fun sized(values: IntArray, size: Int, what: String) =
            values.also { if (it.size != size) throw SessionError("state file $what has ${it.size} entries, this session needs $size") }
        fun sized(values: FloatArray, size: Int, what: String) =
            values.also { if (it.size != size) throw SessionError("state file $what has ${it.size} entries, this session needs $size") }
        task = p[0]; epoch = p[1]; cursor = p[2]; eventsDone = p[3]; refreshPending = p[4] == 1; stepsSinceRefresh = p[5]
        if (counters.size != 4) throw SessionError("state file counters are malformed")
        globalStep = counters[0]; examplesPresented = counters[1]; trainNanos = counters[2]; removedBefore = counters[3]
        epochOrder = r.optionalInts("epoch_order")
        removed.clear(); removed.addAll(r.int("removed").toList())
        losses.clear(); losses.addAll(r.float("losses").toList())
        val classValues = r.double("class_il")
        val taskValues = r.double("task_il")
        classIl.clear(); taskIl.clear()
        var at = 0
        for (size in r.int("matrix_row_sizes")) {
            if (size < 0 || at + size > classValues.size || classValues.size != taskValues.size) throw SessionError("state file accuracy rows are malformed")
            classIl.add(classValues.copyOfRange(at, at + size))
            taskIl.add(taskValues.copyOfRange(at, at + size))
            at += size
        }
        taskExamples = r.int("task_examples").toMutableList()
        removedByTask.clear()
        var offset = 0
        val flat = r.int("removed_by_task")
        for (size in r.int("removed_by_task/sizes")) { removedByTask.add(flat.copyOfRange(offset, offset + size)); offset += size }
        activeAfterUpdates.clear()
        val active = r.int("active_after_mask_updates")
        val width = 2 + plan.sparseLayers.size
        for (i in 0 until active.size / width) activeAfterUpdates.add(active.copyOfRange(i * width, (i + 1) * width))
        stats.ensure(r.int("stats/presentations").size)
        for ((name, table) in listOf("presentations" to stats.presentations, "correct" to stats.correct,
                "last_correct" to stats.lastCorrect, "forgetting_events" to stats.forgettingEvents))
            sized(r.int("stats/$name"), stats.size, "stats/$name").copyInto(table)
        sized(r.float("stats/last_margin"), stats.size, "stats/last_margin").copyInto(stats.lastMargin)
        buffer?.let { b ->
            sized(r.float("buffer/images"), b.images.size, "buffer/images").copyInto(b.images)
            sized(r.int("buffer/labels"), b.labels.size, "buffer/labels").copyInto(b.labels)
            sized(r.float("buffer/logits"), b.logits.size, "buffer/logits").copyInto(b.logits)
            sized(r.int("buffer/task_ids"), b.taskIds.size, "buffer/task_ids").copyInto(b.taskIds)
            sized(r.int("buffer/example_ids"), b.exampleIds.size, "buffer/example_ids").copyInto(b.exampleIds)
            b.seen = r.long("buffer/seen")[0]
        }
        if (task < 0 || epoch !in 0..plan.epochsPerTask) throw SessionError("state file progress (task $task, epoch $epoch) is outside the plan")
        val state = r.bytesUnder("model/")
        r.checkNothingUnknown()
        model.setState(state)
    }

    private companion object {
        const val EVALUATION_BATCHES = 8  // batches prepared at once when evaluating
    }
}
