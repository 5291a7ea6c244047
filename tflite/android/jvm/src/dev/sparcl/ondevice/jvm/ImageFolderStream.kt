package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.ImageSet
import dev.sparcl.ondevice.SessionError
import dev.sparcl.ondevice.SessionPlan
import dev.sparcl.ondevice.TaskExamples
import dev.sparcl.ondevice.TaskStream
import java.io.File
import java.io.IOException
import javax.imageio.ImageIO

/**
 * Tasks as an app's photos arrive: a folder of task_1, task_2, ... each with train/<class>/ and
 * optionally test/<class>/ folders of 8-bit PNGs of the model's image shape (grey or RGB as its
 * channels), class folders named by the class index. A task's classes are its train/ class
 * folders; its examples come in the order of their file names (then class), numbered on from the
 * tasks before; a task without test/ is not evaluated. The rule of `sparcl_tf/ondevice/task_data.py`
 * for the Python hosts. A task's images are read when it is asked for (one task in memory);
 * test sets are kept once read. Decoded here with javax.imageio; an Android app decodes with
 * BitmapFactory into the same bytes.
 */
class ImageFolderStream(private val folder: File, private val plan: SessionPlan) : TaskStream {
    private val tasks: List<File> = generateSequence(1) { it + 1 }
        .map { File(folder, "task_$it") }.takeWhile { it.isDirectory }.toList()
    private val classes: List<IntArray>
    private val firstIds: IntArray
    private val tests = arrayOfNulls<TaskExamples>(tasks.size)

    init {
        if (tasks.isEmpty()) throw SessionError("$folder holds no task_1 folder: not a task-image folder")
        folder.listFiles()?.map { it.name }?.filter { it.startsWith("task_") && it !in tasks.map { t -> t.name } }?.sorted()?.firstOrNull()?.let {
            throw SessionError("$folder: $it does not follow task_1 .. task_${tasks.size} without a gap")
        }
        classes = tasks.map { task -> classFolders(File(task, "train")).map { it.first }.toIntArray() }
        var next = 0
        firstIds = IntArray(tasks.size) { t -> next.also { next += files(File(tasks[t], "train")).size } }
    }

    override val numTasks: Int get() = tasks.size
    override fun classes(task: Int) = classes[task]
    override fun training(task: Int): TaskExamples {
        val examples = read(File(tasks[task], "train"))
        return TaskExamples(examples.images, examples.labels, IntArray(examples.labels.size) { firstIds[task] + it })
    }
    override fun test(task: Int): TaskExamples = tests[task] ?: (File(tasks[task], "test").let { directory ->
        if (directory.isDirectory) read(directory) else TaskExamples(ImageSet.ofBytes(ByteArray(0), plan.imageSize), IntArray(0), IntArray(0))
    }).also { tests[task] = it }

    /** (class, folder) of a split's class folders, by class. */
    private fun classFolders(split: File): List<Pair<Int, File>> {
        if (!split.isDirectory) throw SessionError("${split.parentFile} has no ${split.name} folder")
        return (split.listFiles() ?: emptyArray()).filter { it.isDirectory }.map { directory ->
            val label = directory.name.takeIf { name -> name.all { it.isDigit() } }?.toIntOrNull()
            if (label == null || label >= plan.numClasses)
                throw SessionError("$split: class folder '${directory.name}' is not a class index 0..${plan.numClasses - 1}")
            label to directory
        }.sortedBy { it.first }
    }

    /** (file, class) of a split's PNGs, by file name then class. */
    private fun files(split: File): List<Pair<File, Int>> = classFolders(split).flatMap { (label, directory) ->
        (directory.listFiles() ?: emptyArray()).filter { it.name.lowercase().endsWith(".png") }.map { it to label }
    }.sortedWith(compareBy({ it.first.name }, { it.second }))

    private fun read(split: File): TaskExamples {
        val files = files(split)
        if (files.isEmpty() && split.name == "train") throw SessionError("$split holds no PNG images")
        val pixels = ByteArray(files.size * plan.imageSize)
        for ((index, entry) in files.withIndex()) decode(entry.first).copyInto(pixels, index * plan.imageSize)
        return TaskExamples(ImageSet.ofBytes(pixels, plan.imageSize), IntArray(files.size) { files[it].second }, IntArray(files.size) { it })
    }

    /** An 8-bit PNG's pixels, rows of (grey | R, G, B), checked against the model's image shape. */
    private fun decode(file: File): ByteArray {
        val image = try { ImageIO.read(file) } catch (error: IOException) { null }
            ?: throw SessionError("$file is not a readable PNG")
        val raster = image.raster
        val (height, width, channels) = Triple(plan.imageShape[0], plan.imageShape[1], plan.imageShape[2])
        if ((0 until raster.numBands).any { raster.sampleModel.getSampleSize(it) != 8 }) throw SessionError("$file is not an 8-bit PNG")
        if (raster.width != width || raster.height != height || raster.numBands != channels)
            throw SessionError("$file is ${raster.width}x${raster.height} pixels with ${raster.numBands} channels; the model takes ${width}x$height with $channels")
        return raster.getPixels(0, 0, width, height, null as IntArray?).let { values -> ByteArray(values.size) { values[it].toByte() } }
    }
}

/** The tasks at [path]: a task-image folder ([ImageFolderStream]) or a task-data file ([NpzTaskStream]). */
fun openTaskStream(path: File, plan: SessionPlan): TaskStream =
    if (path.isDirectory) ImageFolderStream(path, plan) else NpzTaskStream(path, plan)
