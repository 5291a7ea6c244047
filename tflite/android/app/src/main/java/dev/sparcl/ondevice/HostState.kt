package dev.sparcl.ondevice

import java.io.File
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/**
 * A run begun on the host, taken over by the phone: the Python device learner's state folder
 * (`ContinualLearner.export(W, with_state=True)` and `tools.convert --with_state` write it as
 * W/state: `checkpoints/ckpt-<step>/variables.npz` and `state.json`, `tasks.json`, test sets)
 * turned into this session's first state file when a [DeviceLearner] opens a folder that holds
 * no state file of its own yet. Model variables, replay buffer, example statistics, steps,
 * accuracy so far and removal count carry over, so the phone goes on where the host stopped.
 */
internal object HostState {
    private val CHECKPOINT = Regex("ckpt-(\\d+)(?:\\.(\\d+))?")

    fun importIfAny(stateDir: File, files: StateFiles, model: SparclModel, plan: SessionPlan) {
        if (files.latest() != null) return
        val latest = (File(stateDir, "checkpoints").listFiles() ?: return)
            .mapNotNull { folder -> CHECKPOINT.matchEntire(folder.name)?.let { (it.groupValues[1].toLong() to (it.groupValues[2].toLongOrNull() ?: 0L)) to folder } }
            .maxWithOrNull(compareBy({ it.first.first }, { it.first.second }))?.second ?: return
        val arrays = readNpz(File(latest, "variables.npz"))
        val progress = try { JSONObject(File(latest, "state.json").readText()) } catch (error: JSONException) {
            throw SessionError("the host state $latest/state.json is unreadable: ${error.message}")
        }
        if (progress.optInt("epoch", -1) != 0 || !progress.isNull("epoch_order"))
            throw SessionError("the host state in $stateDir is in the middle of a task; finish it on the host first")
        fun array(name: String) = arrays[name] ?: throw SessionError("the host state in $stateDir lacks '$name' (another model or method?)")
        val task = progress.getInt("task")
        val r = StateFiles.Records()
        r.ints["progress"] = intArrayOf(task, 0, 0, 0, 1, 0)
        r.longs["counters"] = longArrayOf(progress.getLong("global_step"), progress.getLong("examples_presented"),
            (progress.getDouble("train_time_s") * 1e9).toLong(), progress.getLong("examples_removed"))
        r.ints["removed"] = IntArray(0)
        r.floats["losses"] = FloatArray(0)
        val classRows = rows(progress.getJSONArray("class_il_matrix"))
        val taskRows = rows(progress.getJSONArray("task_il_matrix"))
        r.ints["matrix_row_sizes"] = classRows.map { it.size }.toIntArray()
        r.doubles["class_il"] = classRows.flatMap { it.toList() }.toDoubleArray()
        r.doubles["task_il"] = taskRows.flatMap { it.toList() }.toDoubleArray()
        r.ints["task_examples"] = progress.getJSONArray("task_examples").let { a -> IntArray(a.length()) { a.getInt(it) } }
        r.ints["removed_by_task/sizes"] = IntArray(task)  // the host keeps counts, not ids
        r.ints["removed_by_task"] = IntArray(0)
        r.ints["active_after_mask_updates"] = IntArray(0)
        for (name in listOf("presentations", "correct", "last_correct", "forgetting_events"))
            r.ints["stats/$name"] = array("stats/stats_$name").ints()
        r.floats["stats/last_margin"] = array("stats/stats_last_margin").floats()
        if (plan.replayDraws > 0) {
            r.floats["buffer/images"] = array("buffer/buffer_images").floats()
            r.ints["buffer/labels"] = array("buffer/buffer_labels").ints()
            r.floats["buffer/logits"] = array("buffer/buffer_logits").floats()
            r.ints["buffer/task_ids"] = array("buffer/buffer_task_ids").ints()
            r.ints["buffer/example_ids"] = array("buffer/buffer_example_ids").ints()
            r.longs["buffer/seen"] = array("buffer/buffer_seen").longs()
        }
        for (name in model.stateSpec.keys) r.bytes["model/$name"] = array("device/$name").bytes()
        files.save(r)
    }

    /** Accuracy rows as doubles (NaN where a task was not evaluated). */
    private fun rows(matrix: JSONArray): List<DoubleArray> = List(matrix.length()) { i ->
        val row = matrix.getJSONArray(i)
        DoubleArray(row.length()) { if (row.isNull(it)) Double.NaN else row.getDouble(it) }
    }
}
