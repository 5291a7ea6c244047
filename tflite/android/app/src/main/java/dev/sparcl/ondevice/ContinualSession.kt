package dev.sparcl.ondevice

import java.io.File
import org.json.JSONObject

/**
 * One continual-learning session on the phone: the app's task data goes through [SparclModel]
 * with replay from a [ReservoirBuffer], the TDM schedule and DGM cadence from the "session_plan"
 * section of signatures.json (written by tools.convert), dynamic data removal from the per-example
 * `correct` output, and the model state saved to [stateDir] after every task.
 *
 * What the app supplies: normalised images (same mean/std as training, in signatures.json's
 * "normalization"), labels and a stable id per example.
 */
class ContinualSession(private val model: SparclModel, signaturesJson: String,
                       private val stateDir: File, bufferCapacity: Int, seed: Long) {
    private val plan = JSONObject(signaturesJson).getJSONObject("session_plan")
    private val buffer = ReservoirBuffer(bufferCapacity, model.imageSize, model.numClasses, seed)
    private val refreshEvery = plan.optInt("dgm_refresh_every", 0)
    private var stepsSinceRefresh = 0

    class Task(val index: Int, val classes: IntArray, val images: FloatArray,
               val labels: IntArray, val ids: IntArray)

    /** Restores the state of the last finished task, if any; returns the next task index. */
    fun resume(): Int {
        val saved = stateDir.listFiles { f -> f.name.matches(Regex("task_\\d+\\.state")) }
            ?.maxByOrNull { it.name.removePrefix("task_").removeSuffix(".state").toInt() }
            ?: return 0
        model.restoreState(saved)
        return saved.name.removePrefix("task_").removeSuffix(".state").toInt() + 1
    }

    fun trainTask(task: Task) {
        val n = task.labels.size
        val batch = model.batchSize
        val classMask = FloatArray(model.numClasses).also { m -> task.classes.forEach { m[it] = 1f } }
        val replayOn = task.index >= plan.optInt("replay_from_task", 1)
        val updates = plan.optJSONArray("mask_updates")
        val events = (0 until (updates?.length() ?: 0)).map { updates!!.getJSONObject(it) }
        val removal = plan.optJSONObject("data_removal")
        val forgetting = ForgettingTracker()
        val removed = HashSet<Int>()
        for (epoch in 0 until plan.optInt("epochs_per_task", 1)) {
            val order = (0 until n).filter { task.ids[it] !in removed }
                .shuffled(kotlin.random.Random(task.index * 1000L + epoch))
            var refresh = true  // fresh gradient masks at each epoch's start
            var cursor = 0
            val epochEvents = events.filter { it.getDouble("progress").toInt() == epoch }
            for (eventIndex in 0..epochEvents.size) {
                val boundary = if (eventIndex < epochEvents.size)
                    ((epochEvents[eventIndex].getDouble("progress") - epoch) * order.size).toInt()
                else order.size
                // full batches of not-removed examples; a partial batch waits for the next segment
                val window = (cursor until boundary).filter { task.ids[order[it]] !in removed }
                val batches = window.size / batch
                for (b in 0 until batches) {
                    step(task, window.subList(b * batch, (b + 1) * batch).map { order[it] },
                         classMask, replayOn, refresh, forgetting)
                    refresh = false
                }
                if (batches > 0) cursor = window[batches * batch - 1] + 1
                if (eventIndex == epochEvents.size) break
                val event = epochEvents[eventIndex]
                if (model.canUpdateMasks && event.has("prune_to")) {
                    model.updateMasks(event.getJSONArray("prune_to").toIntArray(),
                                      event.getJSONArray("grow_to").toIntArray(),
                                      seed = task.index * 1009 + event.getInt("update_index"))
                    refresh = true
                }
                val stage = event.optInt("removal_stage", 0)
                if (removal != null && stage > 0) {
                    val target = Math.round(removal.getDouble("total_fraction") * n * stage /
                                            removal.getInt("stages")).toInt()
                    removed += forgetting.easiest(target - removed.size, exclude = removed)
                    forgetting.reset()
                }
            }
        }
        model.saveState(File(stateDir, "task_${task.index}.state"))
    }

    private fun step(task: Task, rows: List<Int>, classMask: FloatArray, replayOn: Boolean,
                     refreshPending: Boolean, forgetting: ForgettingTracker) {
        val size = model.imageSize
        val images = FloatArray(rows.size * size)
        val labels = IntArray(rows.size)
        rows.forEachIndexed { i, row ->
            task.images.copyInto(images, i * size, row * size, (row + 1) * size)
            labels[i] = task.labels[row]
        }
        val draws = if (replayOn && buffer.size > 0)
            List(model.replayDraws) { buffer.sample(model.replayBatchSize) } else null
        val refresh = refreshPending || (refreshEvery > 0 && stepsSinceRefresh >= refreshEvery)
        stepsSinceRefresh = if (refresh) 1 else stepsSinceRefresh + 1
        val result = model.train(images, labels, classMask, draws, refresh)
        rows.forEachIndexed { i, row ->
            buffer.offer(images, labels, result.logits, i)
            forgetting.observe(task.ids[row], result.correct[i] > 0f)
        }
    }

    private fun org.json.JSONArray.toIntArray() = IntArray(length()) { getInt(it) }
}

/** Forgetting events per example id (correct at one presentation, wrong at the next). */
class ForgettingTracker {
    private val lastCorrect = HashMap<Int, Boolean>()
    private val events = HashMap<Int, Int>()
    private val everCorrect = HashSet<Int>()

    fun observe(id: Int, correct: Boolean) {
        if (lastCorrect[id] == true && !correct) events[id] = (events[id] ?: 0) + 1
        if (correct) everCorrect += id
        lastCorrect[id] = correct
    }

    /** The [count] presented examples least worth keeping: never forgotten, learned. */
    fun easiest(count: Int, exclude: Set<Int>): List<Int> =
        lastCorrect.keys.filter { it !in exclude }
            .sortedBy { if (it in everCorrect) events[it] ?: 0 else Int.MAX_VALUE }
            .take(maxOf(count, 0))

    fun reset() {
        lastCorrect.clear(); events.clear(); everCorrect.clear()
    }
}
