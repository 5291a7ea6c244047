package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.ImageSet
import dev.sparcl.ondevice.SessionError
import dev.sparcl.ondevice.SessionPlan
import dev.sparcl.ondevice.TaskExamples
import dev.sparcl.ondevice.TaskStream
import dev.sparcl.ondevice.readNpz
import java.io.File

/**
 * The task stream in a task-data file that `python -m tools.convert --task_data` writes:
 * `train_images_<t>`, `train_labels_<t>`, `train_ids_<t>`, `test_images_<t>`, `test_labels_<t>`, and
 * optionally `classes_<t>` (default: the classes among the task's training labels); without
 * `train_ids_<t>` a task's examples are numbered on from the largest id before; without
 * `test_images_<t>` the task is not evaluated (its accuracy is null).
 */
class NpzTaskStream(file: File, plan: SessionPlan) : TaskStream {
    private val imageShape = plan.imageShape
    private val arrays = readNpz(file)
    override val numTasks: Int = generateSequence(0) { it + 1 }.takeWhile { "train_images_$it" in arrays }.count()

    init {  // the rules of sparcl_tf/ondevice/task_data.py's read_task_data
        if (numTasks == 0) throw SessionError("data file $file holds no train_images_0: not a task-data file")
        val known = (0 until numTasks).flatMap { t -> FIELDS.map { "${it}_$t" } }.toSet()
        val unknown = (arrays.keys - known).sorted()
        if (unknown.isNotEmpty()) throw SessionError("data file $file has arrays ${unknown.take(4)} that are no task's (tasks 0..${numTasks - 1} need train_images_<t>, train_labels_<t>)")
    }

    private val training = mutableListOf<TaskExamples>().apply {
        var firstId = 0  // without train_ids_<t>, ids count on from the largest id of the tasks before
        for (task in 0 until numTasks) add(load("train", task, firstId).also { examples ->
            examples.ids.maxOrNull()?.let { firstId = it + 1 } })
    }
    private val test = List(numTasks) { load("test", it, null) }

    init {  // the whole file checked before any task trains, as the Python hosts do
        val seen = HashSet<Int>()  // ids stay distinct over the stream: a repeated one would share another's statistics
        for (task in 0 until numTasks) {
            training[task].check("data file task $task training data", plan.numClasses)
            test[task].check("data file task $task test data", plan.numClasses)
            training[task].ids.firstOrNull { !seen.add(it) }?.let { throw SessionError("data file task $task: example id $it repeats (from an earlier task)") }
        }
    }

    private fun array(name: String) = arrays[name] ?: throw SessionError("data file lacks '$name'")

    private fun load(split: String, task: Int, firstId: Int?): TaskExamples {
        val imageSize = imageShape.fold(1) { product, dimension -> product * dimension }
        if (firstId == null && "test_images_$task" !in arrays) return TaskExamples(ImageSet.ofFloats(FloatArray(0), imageSize), IntArray(0), IntArray(0))
        try {
            val images = array("${split}_images_$task")
            if (images.shape.size != 4 || !images.shape.drop(1).toIntArray().contentEquals(imageShape))
                throw SessionError("${split}_images_$task has shape ${images.shape.contentToString()}; the model takes [N, ${imageShape.joinToString()}]")
            val labels = array("${split}_labels_$task")
            if (labels.shape.size != 1) throw SessionError("${split}_labels_$task has shape ${labels.shape.contentToString()}; labels are one per image")
            val labelValues = labels.ints()
            val ids = if (firstId == null) IntArray(labelValues.size) { it }
                else arrays["train_ids_$task"]?.ints() ?: IntArray(labelValues.size) { firstId + it }
            return TaskExamples(images.images(imageSize), labelValues, ids)
        } catch (error: SessionError) {
            throw SessionError("data file task $task ${if (firstId == null) "test" else "training"} data: ${error.message}")
        }
    }

    private companion object {
        val FIELDS = listOf("train_images", "train_labels", "train_ids", "classes", "test_images", "test_labels")
    }

    private val classes = List(numTasks) { task ->
        (arrays["classes_$task"]?.ints() ?: training[task].labels).distinct().sorted().toIntArray().also { classes ->
            if (classes.isEmpty() || classes.any { it !in 0 until plan.numClasses })
                throw SessionError("data file task $task: classes ${classes.contentToString()} must lie in 0..${plan.numClasses - 1}")
            if (training[task].labels.any { it !in classes }) throw SessionError("data file task $task: training labels outside classes_$task")
        } }

    override fun training(task: Int) = training[task]
    override fun test(task: Int) = test[task]
    override fun classes(task: Int) = classes[task]
}
