package dev.sparcl.ondevice

import java.util.zip.CRC32
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/** One event of a task: train the kept examples before [position], then apply it. */
class PlanEvent(
    val epoch: Int, val numerator: Int, val denominator: Int, val updateIndex: Int,
    val maskUpdate: Boolean, val seed: Int, val pruneTo: IntArray, val growTo: IntArray,
    val removalStage: Int, val removalTarget: Int,
) {
    /** Nearest position, halves up, in an epoch order of [length] examples (the plan's rounding rule). */
    fun position(length: Int): Int =
        ((2L * numerator * length + denominator) / (2L * denominator)).toInt()
}

class PlanTask(val classes: IntArray, val trainingExamples: Int, val events: List<PlanEvent>)

/**
 * The per-task learning-rate schedule (the Python twin: sparcl_tf/session/learning_rate.py):
 * [value] at progress p = (epoch + cursor / epoch length) / epochs per task, in doubles.
 */
class LearningRate(val schedule: String, val base: Double, val finalFraction: Double,
                   val milestones: DoubleArray, val gamma: Double) {
    fun value(progress: Double): Double = when (schedule) {
        "cosine" -> base * (finalFraction + (1.0 - finalFraction) * 0.5 * (1.0 + StrictMath.cos(Math.PI * progress)))
        "step" -> milestones.fold(base) { rate, milestone -> if (progress >= milestone) rate * gamma else rate }
        else -> base
    }

    override fun toString() = "$schedule $base $finalFraction ${milestones.contentToString()} $gamma"
}

/**
 * The session plan (version 2) that `tools.convert` writes into signatures.json: every decision
 * the host makes, with its counts and seeds. Spec: tflite/README.md, "Session plan"; the Python
 * twin is sparcl_tf/session/plan.py. [parse] refuses a plan it cannot follow with one SessionError.
 */
class SessionPlan(
    val seed: Long, val epochsPerTask: Int, val batchSize: Int, val numClasses: Int,
    val learningRate: LearningRate, val imageShape: IntArray, val bufferSize: Int, val replayFromTask: Int, val replayDraws: Int,
    val replayBatchSize: Int, val momentumResetPerTask: Boolean, val unit: String,
    val sparseLayers: List<String>, val layerUnits: IntArray, val dgmRefreshEvery: Int,
    val mean: FloatArray, val std: FloatArray, val augmentation: String, val cropPadding: Int,
    val tasks: List<PlanTask>,
) {
    val imageSize: Int get() = imageShape.fold(1) { product, dimension -> product * dimension }
    val channels: Int get() = imageShape.last()
    val hasMaskUpdates: Boolean get() = tasks.any { task -> task.events.any { it.maskUpdate } }

    /** CRC32 of every field as parsed: a state file records it, so it resumes only this plan. */
    val fingerprint: Long by lazy {
        val text = StringBuilder()
        text.append("$seed $epochsPerTask $batchSize $numClasses ${imageShape.contentToString()} $bufferSize ")
        text.append("$replayFromTask $replayDraws $replayBatchSize $momentumResetPerTask $unit $sparseLayers ")
        text.append("${layerUnits.contentToString()} $dgmRefreshEvery ${mean.contentToString()} ${std.contentToString()} ")
        text.append("$augmentation $cropPadding $learningRate")
        for (task in tasks) {
            text.append(" | ${task.classes.contentToString()} ${task.trainingExamples}")
            for (e in task.events) text.append(" ${e.epoch} ${e.numerator} ${e.denominator} ${e.updateIndex} ${e.maskUpdate} " +
                "${e.seed} ${e.pruneTo.contentToString()} ${e.growTo.contentToString()} ${e.removalStage} ${e.removalTarget}")
        }
        CRC32().apply { update(text.toString().toByteArray()) }.value
    }

    companion object {
        const val VERSION = 2
        private val PURPOSES = mapOf("epoch_order" to SessionRandom.EPOCH_ORDER, "reservoir" to SessionRandom.RESERVOIR,
            "replay" to SessionRandom.REPLAY, "augment" to SessionRandom.AUGMENT, "removal" to SessionRandom.REMOVAL,
            "growth" to SessionRandom.GROWTH)
        private val AUGMENTATIONS = setOf("none", "crop", "crop_flip")
        private val SCHEDULES = setOf("constant", "cosine", "step")

        /** The plan in the text of a signatures.json. */
        fun fromSignaturesJson(text: String): SessionPlan {
            val described = try { JSONObject(text) } catch (error: JSONException) {
                throw SessionError("signatures.json is not JSON: ${error.message}")
            }
            val plan = described.optJSONObject("session_plan")
                ?: throw SessionError("signatures.json has no session_plan: convert the run again with tools.convert")
            return parse(plan)
        }

        fun parse(plan: JSONObject): SessionPlan = try { read(plan) } catch (error: JSONException) {
            throw SessionError("session plan is malformed: ${error.message}")
        }

        private fun ints(array: JSONArray) = IntArray(array.length()) { array.getInt(it) }
        private fun floats(array: JSONArray) = FloatArray(array.length()) { array.getDouble(it).toFloat() }
        private fun require(ok: Boolean, what: () -> String) { if (!ok) throw SessionError("session plan: ${what()}") }

        private fun read(plan: JSONObject): SessionPlan {
            val version = plan.opt("version")
            if (version != VERSION) throw SessionError("session plan version $version is not $VERSION: convert the run again with tools.convert")
            val replay = plan.getJSONObject("replay")
            val normalization = plan.getJSONObject("normalization")
            val augmentation = plan.getJSONObject("augmentation")
            val random = plan.getJSONObject("random")
            val rate = plan.getJSONObject("learning_rate")
            val milestones = rate.getJSONArray("milestones")
            require(random.getString("generator") == "splitmix64") { "random generator ${random.getString("generator")} is not splitmix64" }
            val purposes = random.getJSONObject("purposes")
            for ((name, number) in PURPOSES) require(purposes.optInt(name, -1) == number) { "random purpose $name is not $number" }
            val layers = plan.getJSONArray("sparse_layers").let { a -> List(a.length()) { a.getString(it) } }
            val numClasses = plan.getInt("num_classes")
            val tasksJson = plan.getJSONArray("tasks")
            val tasks = List(tasksJson.length()) { index ->
                val task = tasksJson.getJSONObject(index)
                val eventsJson = task.getJSONArray("events")
                PlanTask(ints(task.getJSONArray("classes")), task.getInt("training_examples"), List(eventsJson.length()) {
                    val e = eventsJson.getJSONObject(it)
                    PlanEvent(e.getInt("epoch"), e.getInt("numerator"), e.getInt("denominator"), e.getInt("update_index"),
                        e.getBoolean("mask_update"), e.getInt("seed"), ints(e.getJSONArray("prune_to")),
                        ints(e.getJSONArray("grow_to")), e.getInt("removal_stage"), e.getInt("removal_target"))
                })
            }
            val result = SessionPlan(
                plan.getLong("seed"), plan.getInt("epochs_per_task"), plan.getInt("batch_size"), numClasses,
                LearningRate(rate.getString("schedule"), rate.getDouble("base"), rate.getDouble("final_fraction"),
                    DoubleArray(milestones.length()) { milestones.getDouble(it) }, rate.getDouble("gamma")),
                ints(plan.getJSONArray("image_shape")), replay.getInt("buffer_size"), replay.getInt("from_task"),
                replay.getInt("draws"), replay.getInt("batch_size"), plan.getBoolean("momentum_reset_per_task"),
                plan.getString("unit"), layers, ints(plan.getJSONArray("layer_units")), plan.getInt("dgm_refresh_every"),
                floats(normalization.getJSONArray("mean")), floats(normalization.getJSONArray("std")),
                augmentation.getString("kind"), augmentation.getInt("crop_padding"), tasks)
            result.validate()
            return result
        }
    }

    private fun validate() {
        require(epochsPerTask >= 1 && batchSize >= 1 && numClasses >= 1) { "epochs_per_task, batch_size and num_classes must be >= 1" }
        require(imageShape.size == 3 && imageShape.all { it >= 1 }) { "image_shape ${imageShape.contentToString()} is not [height, width, channels]" }
        require(mean.size == channels && std.size == channels && std.all { it > 0f && it.isFinite() } && mean.all { it.isFinite() }) {
            "normalization needs $channels finite means and positive stds" }
        require(bufferSize >= 0 && replayDraws >= 0 && replayBatchSize >= 0 && replayFromTask >= 0) { "replay sizes must be >= 0" }
        require(replayDraws == 0 || (bufferSize > 0 && replayBatchSize > 0)) { "replay draws need a buffer and a replay batch" }
        require(unit == "weights" || unit == "filter_slots") { "unit '$unit' is neither weights nor filter_slots" }
        require(layerUnits.size == sparseLayers.size) { "layer_units and sparse_layers differ in length" }
        require(dgmRefreshEvery >= 0) { "dgm_refresh_every must be >= 0" }
        require(augmentation in AUGMENTATIONS) { "augmentation '$augmentation' is unknown" }
        require(cropPadding >= 0) { "crop_padding must be >= 0" }
        with(learningRate) {
            require(schedule in SCHEDULES && base > 0.0 && base.isFinite() && finalFraction in 0.0..1.0 &&
                gamma > 0.0 && gamma <= 1.0 && milestones.all { it > 0.0 && it < 1.0 }) { "learning_rate '$this' is not a schedule this session runs" }
        }
        require(tasks.isNotEmpty()) { "no tasks" }
        for ((index, task) in tasks.withIndex()) {
            require(task.classes.isNotEmpty() && task.classes.all { it in 0 until numClasses }) { "task $index has classes outside 0..${numClasses - 1}" }
            require(task.trainingExamples >= batchSize) { "task $index has ${task.trainingExamples} examples, fewer than a batch" }
            for (e in task.events) {
                require(e.epoch in 0 until epochsPerTask && e.denominator > 0 && e.numerator in 0..e.denominator) {
                    "task $index has an event outside its epochs" }
                require(!e.maskUpdate || (e.pruneTo.size == sparseLayers.size && e.growTo.size == sparseLayers.size)) {
                    "task $index mask update has counts for ${e.pruneTo.size} layers, not ${sparseLayers.size}" }
                require(e.removalStage >= 0 && e.removalTarget in 0..task.trainingExamples) { "task $index has a bad removal stage" }
            }
        }
    }
}
