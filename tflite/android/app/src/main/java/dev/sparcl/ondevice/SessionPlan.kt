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

/**
 * The constants every task's events follow from (the plan's `schedule`; Python's reference:
 * `SessionPlan.task_events` in sparcl_tf/session/plan.py): [updatesPerTask] update slots a task,
 * each a mask update under [maskRule] `tdm` or `rigl` (`none`: no mask updates), slots
 * 1..[removalStages] also data-removal stages removing [removalFraction] of the task in all, in
 * tasks of at least [removalMinTaskSteps] steps ([SessionPlan.taskSteps]).
 * Weight units: per-layer target sparsities with TDM's opening and swap fractions or RigL's
 * decaying drop over [rigl].horizonTasks tasks; filter slots: per layer [target, opening, swap].
 */
class TaskSchedule(
    val updatesPerTask: Int, val maskRule: String, val removalFraction: Double, val removalStages: Int,
    val removalMinTaskSteps: Int, val layerTargets: DoubleArray, val openFraction: Double, val swapFraction: Double,
    val rigl: Rigl, val filterCounts: List<IntArray>,
) {
    class Rigl(val dropFraction: Double, val endFraction: Double, val horizonTasks: Int)

    override fun toString() = "$updatesPerTask $maskRule $removalFraction $removalStages $removalMinTaskSteps ${layerTargets.contentToString()} " +
        "$openFraction $swapFraction ${rigl.dropFraction} ${rigl.endFraction} ${rigl.horizonTasks} " +
        filterCounts.joinToString(",") { it.contentToString() }
}

/**
 * The per-task learning-rate schedule (the Python twin: sparcl_tf/session/learning_rate.py):
 * [value] at progress p = (epoch + cursor / epoch length) / epochs per task, in doubles.
 */
class LearningRate(val schedule: String, val base: Double, val finalFraction: Double,
                   val milestones: DoubleArray, val gamma: Double) {
    /** The rate at [progress] (0 to 1) through the task. */
    fun value(progress: Double): Double = when (schedule) {
        "cosine" -> base * (finalFraction + (1.0 - finalFraction) * 0.5 * (1.0 + StrictMath.cos(Math.PI * progress)))
        "step" -> milestones.fold(base) { rate, milestone -> if (progress >= milestone) rate * gamma else rate }
        else -> base
    }

    override fun toString() = "$schedule $base $finalFraction ${milestones.contentToString()} $gamma"
}

/**
 * The session plan (version 4) that `tools.convert` writes into signatures.json: a policy, not a
 * list of tasks. Every decision the host makes follows from its constants, [taskEvents] computes a
 * task's events when the task begins from its index and example count alone. Spec: tflite/README.md, "Session plan"; the Python
 * twin is sparcl_tf/session/plan.py. [parse] refuses a plan it cannot follow with one SessionError.
 */
class SessionPlan(
    val seed: Long, val epochsPerTask: Int, val batchSize: Int, val numClasses: Int,
    val learningRate: LearningRate, val imageShape: IntArray, val bufferSize: Int, val replayFromTask: Int, val replayDraws: Int,
    val replayBatchSize: Int, val momentumResetPerTask: Boolean, val unit: String,
    val sparseLayers: List<String>, val layerUnits: IntArray, val dgmRefreshEvery: Int,
    val mean: FloatArray, val std: FloatArray, val augmentation: String, val cropPadding: Int,
    val schedule: TaskSchedule,
) {
    /** The plan as the signatures.json gave it (a learner keeps it in its state folder). */
    var source: String = ""
        private set

    /** The SHA-256 of the model's bytes from signatures.json (`model_sha256`; null in older
     *  files): what [ModelFile.verify] compares before the runtime loads the model. */
    var modelSha256: String? = null
        private set

    /** Values in one image (height x width x channels). */
    val imageSize: Int get() = imageShape.fold(1) { product, dimension -> product * dimension }
    /** Channels of an image. */
    val channels: Int get() = imageShape.last()
    /** Whether the plan updates masks during a task. */
    val hasMaskUpdates: Boolean get() = schedule.maskRule != "none"

    /**
     * The events of task [task] (0-based) training on [examples] examples, in order, from the
     * plan's policy alone: update slot i of U sits at epoch progress i E / U.
     */
    fun taskEvents(task: Int, examples: Int): List<PlanEvent> {
        val updates = schedule.updatesPerTask
        val stages = removalStages(examples)
        val total = Math.floor(schedule.removalFraction * examples + 0.5).toLong()
        val events = mutableListOf<PlanEvent>()
        for (index in 0 until updates) {
            val stage = if (index in 1..stages) index else 0
            val update = hasMaskUpdates
            if (!update && stage == 0) continue
            val span = index * epochsPerTask
            val epoch = span / updates
            val counts = if (update) counts(task, index) else null
            events.add(PlanEvent(epoch, span - epoch * updates, updates, index, update,
                if (update) growthSeed(task, index) else 0, counts?.first ?: IntArray(0), counts?.second ?: IntArray(0),
                stage, if (stage > 0) ((2 * total * stage + stages) / (2L * stages)).toInt() else 0))
        }
        return events
    }

    /** The steps of a task of [examples] examples were none removed: every epoch's full batches. */
    fun taskSteps(examples: Int): Long = epochsPerTask.toLong() * (examples / batchSize)

    /** The data-removal stages of a task of [examples] examples: none below `removal.min_task_steps` steps. */
    fun removalStages(examples: Int): Int =
        if (taskSteps(examples) >= schedule.removalMinTaskSteps) schedule.removalStages else 0

    /** The seed of mask update [update]'s random growth in task [task]: below(2^17) of its stream. */
    fun growthSeed(task: Int, update: Int): Int =
        SessionRandom(seed, SessionRandom.GROWTH, task.toLong(), update.toLong()).below(0, GROWTH_SEEDS).toInt()

    /** (prune_to, grow_to) per sparse layer at mask update [index] of task [task], in the plan's unit. */
    private fun counts(task: Int, index: Int): Pair<IntArray, IntArray> {
        val updates = schedule.updatesPerTask
        if (unit == "filter_slots") {
            val phases = schedule.filterCounts.map { (target, opening, swap) -> tdmPhase(index, updates, target, opening, swap) }
            return IntArray(phases.size) { phases[it].first } to IntArray(phases.size) { phases[it].second }
        }
        val targets = schedule.layerTargets.map { target ->
            if (schedule.maskRule == "tdm") {
                val (prune, grow) = when (index) {  // TDM: open at the start, swap in the middle, freeze at the end
                    0 -> target to target - schedule.openFraction
                    updates - 1 -> target to target
                    else -> target + schedule.swapFraction to target
                }
                minOf(1.0, prune) to maxOf(0.0, grow)
            } else {
                val progress = (index * epochsPerTask).toDouble() / updates
                val runProgress = (task + progress / epochsPerTask) / schedule.rigl.horizonTasks
                if (runProgress >= schedule.rigl.endFraction) target to target else {
                    val drop = schedule.rigl.dropFraction / 2 * (1 + StrictMath.cos(Math.PI * runProgress / schedule.rigl.endFraction))
                    target + drop * (1 - target) to target
                }
            }
        }
        return IntArray(targets.size) { activeCount(layerUnits[it], targets[it].first) } to
            IntArray(targets.size) { activeCount(layerUnits[it], targets[it].second) }
    }

    /** CRC32 of every field as parsed: a state file records it, so it resumes only this plan. */
    val fingerprint: Long by lazy {
        val text = StringBuilder()
        text.append("$seed $epochsPerTask $batchSize $numClasses ${imageShape.contentToString()} $bufferSize ")
        text.append("$replayFromTask $replayDraws $replayBatchSize $momentumResetPerTask $unit $sparseLayers ")
        text.append("${layerUnits.contentToString()} $dgmRefreshEvery ${mean.contentToString()} ${std.contentToString()} ")
        text.append("$augmentation $cropPadding $learningRate $schedule")
        CRC32().apply { update(text.toString().toByteArray()) }.value
    }

    companion object {
        const val VERSION = 4
        private const val GROWTH_SEEDS = 1L shl 17  // growth seeds lie in [0, 2^17): the device hash stays inside int32

        /** TDM's phase in units that add (filters): first update opens, middle ones swap, the last freezes. */
        fun tdmPhase(index: Int, updates: Int, level: Int, opening: Int, swap: Int): Pair<Int, Int> = when (index) {
            0 -> level to level + opening
            updates - 1 -> level to level
            else -> level - swap to level
        }

        /** Units a layer of [size] keeps at [sparsity]: size - rint(sparsity * size) (halves to even, as Python's round). */
        fun activeCount(size: Int, sparsity: Double): Int = size - Math.rint(sparsity * size).toInt()
        private val PURPOSES = mapOf("epoch_order" to SessionRandom.EPOCH_ORDER, "reservoir" to SessionRandom.RESERVOIR,
            "replay" to SessionRandom.REPLAY, "augment" to SessionRandom.AUGMENT, "removal" to SessionRandom.REMOVAL,
            "growth" to SessionRandom.GROWTH)
        private val AUGMENTATIONS = setOf("none", "crop", "crop_flip")
        private val SCHEDULES = setOf("constant", "cosine", "step")
        private val MASK_RULES = setOf("none", "tdm", "rigl")

        /** The plan in the text of a signatures.json. */
        fun fromSignaturesJson(text: String): SessionPlan {
            val described = try { JSONObject(text) } catch (error: JSONException) {
                throw SessionError("signatures.json is not JSON: ${error.message}")
            }
            val plan = described.optJSONObject("session_plan")
                ?: throw SessionError("signatures.json has no session_plan: convert the run again with tools.convert")
            return parse(plan).also { it.modelSha256 = described.optString("model_sha256").ifEmpty { null } }
        }

        fun parse(plan: JSONObject): SessionPlan = try { read(plan) } catch (error: JSONException) {
            throw SessionError("session plan is malformed: ${error.message}")
        }

        private fun doubles(array: JSONArray) = DoubleArray(array.length()) { array.getDouble(it) }

        private fun schedule(json: JSONObject): TaskSchedule {
            val removal = json.getJSONObject("removal")
            val tdm = json.optJSONObject("tdm")
            val rigl = json.optJSONObject("rigl")
            val filters = json.optJSONArray("filter_counts")
            return TaskSchedule(json.getInt("updates_per_task"), json.getString("mask_rule"), removal.getDouble("fraction"),
                removal.getInt("stages"), removal.getInt("min_task_steps"), json.optJSONArray("layer_targets")?.let(::doubles) ?: DoubleArray(0),
                tdm?.getDouble("open_fraction") ?: 0.0, tdm?.getDouble("swap_fraction") ?: 0.0,
                TaskSchedule.Rigl(rigl?.getDouble("drop_fraction") ?: 0.0, rigl?.getDouble("end_fraction") ?: 0.0,
                    rigl?.getInt("horizon_tasks") ?: 1),
                filters?.let { a -> List(a.length()) { ints(a.getJSONArray(it)) } } ?: emptyList())
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
            val result = SessionPlan(
                plan.getLong("seed"), plan.getInt("epochs_per_task"), plan.getInt("batch_size"), numClasses,
                LearningRate(rate.getString("schedule"), rate.getDouble("base"), rate.getDouble("final_fraction"),
                    DoubleArray(milestones.length()) { milestones.getDouble(it) }, rate.getDouble("gamma")),
                ints(plan.getJSONArray("image_shape")), replay.getInt("buffer_size"), replay.getInt("from_task"),
                replay.getInt("draws"), replay.getInt("batch_size"), plan.getBoolean("momentum_reset_per_task"),
                plan.getString("unit"), layers, ints(plan.getJSONArray("layer_units")), plan.getInt("dgm_refresh_every"),
                floats(normalization.getJSONArray("mean")), floats(normalization.getJSONArray("std")),
                augmentation.getString("kind"), augmentation.getInt("crop_padding"), schedule(plan.getJSONObject("schedule")))
            result.validate()
            result.source = plan.toString()
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
        with(schedule) {
            require(updatesPerTask >= 2 && maskRule in MASK_RULES) { "schedule: updates_per_task $updatesPerTask (>= 2) or mask_rule '$maskRule' $MASK_RULES" }
            require(removalFraction in 0.0..1.0 && removalStages in 0 until updatesPerTask && removalMinTaskSteps >= 0) {
                "schedule: removal $removalFraction in $removalStages stages from $removalMinTaskSteps task steps" }
            if (maskRule != "none" && unit == "filter_slots")
                require(maskRule == "tdm" && filterCounts.size == sparseLayers.size && filterCounts.all { it.size == 3 && it.all { v -> v >= 0 } }) {
                    "schedule: filter_slots need mask_rule tdm and [target, opening, swap] per layer" }
            if (maskRule != "none" && unit == "weights") {
                require(layerTargets.size == sparseLayers.size && layerTargets.all { it >= 0.0 && it < 1.0 }) {
                    "schedule: layer_targets needs a sparsity in [0, 1) for each of ${sparseLayers.size} layers" }
                require(listOf(openFraction, swapFraction, rigl.dropFraction, rigl.endFraction).all { it in 0.0..1.0 } && rigl.horizonTasks >= 1) {
                    "schedule: tdm and rigl fractions must lie in [0, 1], rigl.horizon_tasks >= 1" }
            }
        }
    }
}
