package dev.sparcl.ondevice

import java.io.DataInputStream
import java.io.DataOutputStream
import java.security.MessageDigest

/**
 * Stored images, uint8 pixels (0..255) or floats in [0, 1], laid out [count, height, width,
 * channels]; [prepare] turns chosen rows into model inputs with the plan's normalisation.
 */
class ImageSet private constructor(val count: Int, private val bytes: ByteArray?, private val floats: FloatArray?, val size: Int) {
    companion object {
        /** [pixels] as uint8 images of [size] values each (a [SessionError] when they do not divide). */
        fun ofBytes(pixels: ByteArray, size: Int) = ImageSet(checkedCount(pixels.size, size), pixels, null, size)
        /** [pixels] in [0, 1] as images of [size] values each (a [SessionError] when they do not divide). */
        fun ofFloats(pixels: FloatArray, size: Int) = ImageSet(checkedCount(pixels.size, size), null, pixels, size)

        /** Images written by [write]; a [SessionError] when they are not images of [size] values. */
        fun read(input: DataInputStream, size: Int): ImageSet {
            val count = input.readInt()
            if (input.readInt() != size || count < 0) throw SessionError("stored images are not of $size values")
            return if (input.readBoolean()) ofBytes(ByteArray(count * size).also { input.readFully(it) }, size)
                else ofFloats(FloatArray(count * size) { input.readFloat() }, size)
        }
        private fun checkedCount(total: Int, size: Int): Int {
            if (size <= 0 || total % size != 0) throw SessionError("$total pixels are not whole images of $size values")
            return total / size
        }
    }

    /** A [SessionError] naming [what] when a float image holds NaN or Inf. */
    fun checkFinite(what: String) {
        if (floats != null && floats.any { !it.isFinite() }) throw SessionError("$what: images hold NaN or Inf")
    }

    /** Adds the stored pixels to [digest] (what a learner compares to know a task again). */
    fun update(digest: MessageDigest) {
        if (bytes != null) digest.update(bytes) else floats!!.forEach { digest.update(java.nio.ByteBuffer.allocate(4).putFloat(it).array()) }
    }

    /** The stored pixels as written by [read]. */
    fun write(out: DataOutputStream) {
        out.writeInt(count); out.writeInt(size); out.writeBoolean(bytes != null)
        if (bytes != null) out.write(bytes) else floats!!.forEach { out.writeFloat(it) }
    }

    /** (pixel / scale - mean) / std per channel, float32 as the trainer computes it. */
    fun prepare(rows: IntArray, plan: SessionPlan): FloatArray {
        val out = FloatArray(rows.size * size)
        val channels = plan.channels
        for ((i, row) in rows.withIndex()) {
            val from = row * size
            for (k in 0 until size) {
                val c = k % channels
                val pixel = if (bytes != null) (bytes[from + k].toInt() and 0xFF).toFloat() / 255f else floats!![from + k]
                out[i * size + k] = (pixel - plan.mean[c]) / plan.std[c]
            }
        }
        return out
    }
}

/** Example ids index the per-example statistics tables: ids from 2^24 on are refused rather than allocated for. */
const val MAX_EXAMPLE_IDS = 1 shl 24

/** A task's examples: images, labels and (for training sets) stable example ids. */
class TaskExamples(val images: ImageSet, val labels: IntArray, val ids: IntArray) {
    init {
        if (labels.size != images.count || ids.size != images.count)
            throw SessionError("${images.count} images, ${labels.size} labels and ${ids.size} ids do not match")
    }

    /** A [SessionError] naming [what] unless these examples suit a model of [numClasses] classes:
     *  finite pixels, labels among its classes, ids in [0, 2^24) and distinct (the rules of
     *  `sparcl_tf/ondevice/task_data.py`: ids index the statistics tables). */
    fun check(what: String, numClasses: Int) {
        images.checkFinite(what)
        labels.firstOrNull { it !in 0 until numClasses }?.let {
            throw SessionError("$what: label $it is outside the model's classes 0..${numClasses - 1}")
        }
        if (ids.any { it < 0 || it >= MAX_EXAMPLE_IDS }) throw SessionError("$what: example ids must lie in [0, 2^24): the per-example statistics are a table indexed by id")
        if (ids.toHashSet().size != ids.size) throw SessionError("$what: example ids repeat within the task")
    }
}

/** Where a session's data comes from: the app's own store on a phone, a data file on a desktop. */
interface TaskStream {
    /** How many tasks the stream holds. */
    val numTasks: Int
    /** Task [task]'s training examples (0-based). */
    fun training(task: Int): TaskExamples
    /** Task [task]'s test examples (empty when it has none). */
    fun test(task: Int): TaskExamples
    /** The task's classes (its current-task CL mask and task-IL evaluation), ascending. */
    fun classes(task: Int): IntArray
}
