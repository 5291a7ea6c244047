package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.ImageSet
import dev.sparcl.ondevice.SessionError
import dev.sparcl.ondevice.TaskExamples
import dev.sparcl.ondevice.TaskStream
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.zip.ZipFile

/** One array of a .npy file: its shape, numpy dtype string and little-endian bytes. */
class NpyArray(val shape: IntArray, val dtype: String, val data: ByteBuffer) {
    val count: Int get() = shape.fold(1) { product, dimension -> product * dimension }

    fun ints(): IntArray = when (dtype) {
        "<i4" -> IntArray(count) { data.getInt(it * 4) }
        "<i8" -> IntArray(count) { i -> data.getLong(i * 8).let { if (it in Int.MIN_VALUE..Int.MAX_VALUE) it.toInt() else throw SessionError("value $it does not fit an int") } }
        "|u1" -> IntArray(count) { data.get(it).toInt() and 0xFF }
        else -> throw SessionError("array of dtype $dtype where integers were expected")
    }

    fun images(imageSize: Int): ImageSet = when (dtype) {
        "|u1" -> ImageSet.ofBytes(ByteArray(count).also { data.duplicate().get(it) }, imageSize)
        "<f4" -> ImageSet.ofFloats(FloatArray(count) { data.getFloat(it * 4) }, imageSize)
        else -> throw SessionError("images of dtype $dtype; expected uint8 or float32")
    }

    companion object {
        private val HEADER = Regex("""'descr':\s*'([^']+)'.*'fortran_order':\s*(True|False).*'shape':\s*\(([^)]*)\)""")

        fun parse(bytes: ByteArray, name: String): NpyArray {
            if (bytes.size < 10 || bytes[0] != 0x93.toByte() || String(bytes, 1, 5) != "NUMPY") throw SessionError("$name is not a .npy array")
            val major = bytes[6].toInt()
            val buffer = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN)
            val headerLength = if (major == 1) buffer.getShort(8).toInt() and 0xFFFF else buffer.getInt(8)
            val start = if (major == 1) 10 else 12
            val header = String(bytes, start, headerLength)
            val match = HEADER.find(header) ?: throw SessionError("$name has an unreadable .npy header: $header")
            if (match.groupValues[2] == "True") throw SessionError("$name is in Fortran order")
            val shape = match.groupValues[3].split(",").map { it.trim() }.filter { it.isNotEmpty() }.map { it.toInt() }.toIntArray()
            val data = ByteBuffer.wrap(bytes, start + headerLength, bytes.size - start - headerLength).slice().order(ByteOrder.LITTLE_ENDIAN)
            val array = NpyArray(shape, match.groupValues[1], data)
            val width = mapOf("|u1" to 1, "|b1" to 1, "<i4" to 4, "<f4" to 4, "<i8" to 8, "<f8" to 8)[array.dtype]
                ?: throw SessionError("$name has dtype ${array.dtype}, which this reader does not take")
            if (data.remaining() != array.count * width) throw SessionError("$name is truncated")
            return array
        }
    }
}

/** The arrays of a .npz file (numpy's zip of .npy files), by name. */
fun readNpz(file: File): Map<String, NpyArray> = try {
    ZipFile(file).use { zip ->
        zip.entries().toList().associate { entry ->
            entry.name.removeSuffix(".npy") to NpyArray.parse(zip.getInputStream(entry).readBytes(), "${file.name}/${entry.name}")
        }
    }
} catch (error: java.io.IOException) {
    throw SessionError("cannot read data file $file: ${error.message}")
}

/**
 * The task stream in a task-data file that `python -m tools.convert --task_data` writes:
 * `train_images_<t>`, `train_labels_<t>`, `train_ids_<t>`, `test_images_<t>`, `test_labels_<t>`, and
 * optionally `classes_<t>` (default: the classes among the task's training labels); without
 * `train_ids_<t>` a task's examples are numbered on from the largest id before; without
 * `test_images_<t>` the task is not evaluated (its accuracy is null).
 */
class NpzTaskStream(file: File, private val imageSize: Int) : TaskStream {
    private val arrays = readNpz(file)
    override val numTasks: Int = generateSequence(0) { it + 1 }.takeWhile { "train_images_$it" in arrays }.count()
    private val training = mutableListOf<TaskExamples>().apply {
        var firstId = 0  // without train_ids_<t>, ids count on from the largest id of the tasks before
        for (task in 0 until numTasks) add(load("train", task, firstId).also { examples ->
            examples.ids.maxOrNull()?.let { firstId = it + 1 } })
    }
    private val test = List(numTasks) { load("test", it, null) }

    private fun array(name: String) = arrays[name] ?: throw SessionError("data file lacks '$name'")

    private fun load(split: String, task: Int, firstId: Int?): TaskExamples {
        if (firstId == null && "test_images_$task" !in arrays) return TaskExamples(ImageSet.ofFloats(FloatArray(0), imageSize), IntArray(0), IntArray(0))
        val images = array("${split}_images_$task").images(imageSize)
        val labels = array("${split}_labels_$task").ints()
        val ids = if (firstId == null) IntArray(labels.size) { it }
            else arrays["train_ids_$task"]?.ints() ?: IntArray(labels.size) { firstId + it }
        return TaskExamples(images, labels, ids)
    }

    private val classes = List(numTasks) { task ->
        (arrays["classes_$task"]?.ints() ?: training[task].labels).distinct().sorted().toIntArray() }

    override fun training(task: Int) = training[task]
    override fun test(task: Int) = test[task]
    override fun classes(task: Int) = classes[task]
}
