package dev.sparcl.ondevice

import java.io.File
import java.io.IOException
import java.io.RandomAccessFile
import java.nio.channels.FileChannel
import java.nio.channels.FileLock
import java.nio.channels.OverlappingFileLockException
import org.json.JSONObject

/**
 * Continual learning on the phone, task by task as the app's data arrives: the names of the
 * Python learners (`fitTask`, `predict`, `evaluate`, `results`; the twin of
 * `sparcl_tf.ondevice.DeviceLearner`, step for step the same session).
 *
 * ```
 * val plan = SessionPlan.fromSignaturesJson(signaturesJson)
 * DeviceLearner(InterpreterModel(modelBuffer, plan.modelSha256), plan, File(filesDir, "sparcl")).use { learner ->
 *     learner.fitTask(images, labels, cancelled = { isStopped })   // a WorkManager worker's flag
 *     val logits = learner.predict(newImages)
 * }
 * ```
 *
 * The model's session plan decides everything: a task's events follow from its index and size
 * when it begins. The learner numbers the examples itself, holds one task's training data at a
 * time, keeps in [stateDir] the session's state files (model state, replay buffer, example
 * statistics, progress) and the tasks seen with their test sets (`TaskRecord`), and takes an
 * exclusive lock on the folder: a second learner on it is a [SessionError]. A learner made again
 * on the folder goes on where the last one stopped; a task cancelled (or killed) in the middle
 * goes on when [fitTask] is given the same data again. A folder a host run was handed over in
 * (`ContinualLearner.export(W, with_state=True)`: W/state) is taken over the first time
 * (`HostState`). Everything refused is a [SessionError]
 * with one line, and a refused call changes nothing.
 */
class DeviceLearner(
    runtime: TrainingModel, private val plan: SessionPlan, private val stateDir: File,
    checkpointEverySteps: Int = 0, records: (JSONObject) -> Unit = {},
) : AutoCloseable {
    private val lockChannel: FileChannel
    private val lock: FileLock
    private val record: TaskRecord
    private val session: ContinualSession
    private var current: TaskExamples? = null  // the task being trained, while fitTask runs

    init {
        if (!stateDir.isDirectory && !stateDir.mkdirs()) throw SessionError("cannot create the state folder $stateDir")
        lockChannel = try { RandomAccessFile(File(stateDir, ".lock"), "rw").channel } catch (error: IOException) {
            throw SessionError("cannot open $stateDir/.lock: ${error.message}")
        }
        lock = (try { lockChannel.tryLock() } catch (error: OverlappingFileLockException) { null }) ?: run {
            lockChannel.close()
            throw SessionError("$stateDir is held by another learner; one learner at a time may use a state folder")
        }
        try {
            keepPlan()
            record = TaskRecord(stateDir, plan.imageSize)
            val model = SparclModel(runtime, plan)
            HostState.importIfAny(stateDir, StateFiles.of(stateDir, plan, model), model, plan)
            session = ContinualSession(model, plan, Tasks(), stateDir, checkpointEverySteps, records)
        } catch (error: Throwable) {
            close()
            throw error
        }
    }

    /** plan.json: the plan the folder is learned under, for a host that takes the run over
     *  (`ContinualLearner.load_device_state`); written once, atomically. */
    private fun keepPlan() {
        val target = File(stateDir, "plan.json")
        if (target.exists()) return
        val temporary = File(stateDir, "plan.json.tmp")
        try {
            temporary.writeText(plan.source)
            if (!temporary.renameTo(target)) throw IOException("cannot rename $temporary")
        } catch (error: IOException) {
            throw SessionError("cannot write $target: ${error.message}")
        }
    }

    /** The learner's tasks for the session: the record's, with the training data of the current one only. */
    private inner class Tasks : TaskStream {
        override val numTasks: Int get() = record.entries.size
        override fun training(task: Int): TaskExamples =
            current?.takeIf { task == session.nextTask }
                ?: throw SessionError("task $task's training data is not held; call fitTask with it")
        override fun test(task: Int) = record.test(task)
        override fun classes(task: Int) = record.entries[task].classes
    }

    /** The 0-based index of the task [fitTask] trains next (or finishes). */
    val nextTask: Int get() = session.nextTask

    /**
     * Learns the next task: [images] (uint8 pixels or [0, 1] floats, the model's image shape) with
     * [labels], at least one batch; [classes] its classes (default: those in [labels]); [test] to
     * evaluate it on after this and every later task (none: not evaluated). [cancelled] is asked
     * between steps: when it says yes the task's state is saved and [TaskCancelled] thrown, and the
     * next call with the same data goes on from there. Returns the results so far.
     */
    fun fitTask(images: ImageSet, labels: IntArray, classes: IntArray? = null, test: TaskExamples? = null,
                cancelled: () -> Boolean = { false }): JSONObject {
        checkExamples(images, labels, "fitTask")
        test?.let { checkExamples(it.images, it.labels, "fitTask test") }
        val taskClasses = (classes ?: labels).distinct().sorted().toIntArray()
        if (taskClasses.isEmpty() || taskClasses.any { it !in 0 until plan.numClasses })
            throw SessionError("fitTask: classes ${taskClasses.contentToString()} must lie in 0..${plan.numClasses - 1}")
        if (labels.any { it !in taskClasses } || test?.labels?.any { it !in taskClasses } == true)
            throw SessionError("fitTask: labels outside classes ${taskClasses.contentToString()}")
        if (labels.size < plan.batchSize) throw SessionError("fitTask: ${labels.size} examples are fewer than one batch (${plan.batchSize})")
        val index = session.nextTask
        val entry = if (index < record.entries.size) record.entries[index].also {
            if (it.digest != TaskRecord.digest(images, labels))
                throw SessionError("fitTask: task ${index + 1} stopped in the middle; give it the same images and labels again to finish it")
        } else record.add(taskClasses, images, labels, test)
        current = TaskExamples(images, labels, IntArray(labels.size) { entry.firstId + it })
        try {
            return session.run(cancelled = cancelled)
        } finally {
            current = null
        }
    }

    /** Logits of [images] ([numClasses] per image; argmax: the predicted class). */
    fun predict(images: ImageSet): FloatArray {
        checkExamples(images, IntArray(images.count), "predict")
        return session.logits(images)
    }

    /** (class-IL, task-IL) accuracy in % on [images] with [labels] (task-IL over [classes], default those in [labels]). */
    fun evaluate(images: ImageSet, labels: IntArray, classes: IntArray? = null): DoubleArray {
        checkExamples(images, labels, "evaluate")
        val (classHits, taskHits) = session.hits(TaskExamples(images, labels, IntArray(labels.size) { it }),
            (classes ?: labels).distinct().sorted().toIntArray())
        return doubleArrayOf(100.0 * classHits / maxOf(labels.size, 1), 100.0 * taskHits / maxOf(labels.size, 1))
    }

    /** The results so far (the session's: accuracy matrices, steps, removals, ...). */
    fun results(): JSONObject = session.results()

    /** The classes the model's logits cover. */
    val numClasses: Int get() = plan.numClasses

    private fun checkExamples(images: ImageSet, labels: IntArray, what: String) {
        if (images.size != plan.imageSize)
            throw SessionError("$what: images of ${images.size} values do not fit the model's ${plan.imageShape.contentToString()}")
        if (labels.size != images.count) throw SessionError("$what: ${images.count} images but ${labels.size} labels")
        images.checkFinite(what)
        if (labels.any { it !in 0 until plan.numClasses })
            throw SessionError("$what: labels lie in [${labels.min()}, ${labels.max()}]; the model has classes 0..${plan.numClasses - 1}")
    }

    /** Releases the model and the state folder's lock; the learner cannot be used afterwards. */
    override fun close() {
        if (lockChannel.isOpen) {
            lock.release()
            lockChannel.close()
        }
    }
}
