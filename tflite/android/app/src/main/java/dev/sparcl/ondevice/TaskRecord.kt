package dev.sparcl.ondevice

import java.io.DataInputStream
import java.io.DataOutputStream
import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.security.MessageDigest
import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/**
 * The tasks a [DeviceLearner] has seen, in its state folder beside the session's state files:
 * `tasks.json` (per task: classes, size, first and end example id, a digest of its data, whether
 * it has a test set; written to a temporary file and renamed, after the test set) and
 * `test_<t>.bin`, read back one at a time when the session evaluates. Example ids run on from one
 * past the largest id before, as the Python twin (`sparcl_tf/ondevice/task_record.py`) numbers them.
 */
class TaskRecord(private val folder: File, private val imageSize: Int) {
    class Entry(val classes: IntArray, val examples: Int, val firstId: Int, val endId: Int, val digest: String, val hasTest: Boolean)

    private val file = File(folder, "tasks.json")
    val entries: MutableList<Entry> = read()

    val nextId: Int get() = entries.maxOfOrNull { it.endId } ?: 0

    private fun read(): MutableList<Entry> {
        if (!file.exists()) return mutableListOf()
        return try {
            val tasks = JSONObject(file.readText()).getJSONArray("tasks")
            MutableList(tasks.length()) { index ->
                val t = tasks.getJSONObject(index)
                val classes = t.getJSONArray("classes")
                Entry(IntArray(classes.length()) { classes.getInt(it) }, t.getInt("examples"), t.getInt("first_id"),
                    t.getInt("end_id"), t.getString("digest"), t.getBoolean("test"))
            }
        } catch (error: JSONException) {
            throw SessionError("$file is not a task record (${error.message}); restore it or use a new state folder")
        }
    }

    /** Records a new task (its [test] set or none) and returns its entry. */
    fun add(classes: IntArray, images: ImageSet, labels: IntArray, test: TaskExamples?): Entry {
        val index = entries.size
        if (test != null) atomically(testFile(index)) { out ->
            test.images.write(out)
            out.writeInt(test.labels.size)
            test.labels.forEach { out.writeInt(it) }
        }
        val first = nextId
        val entry = Entry(classes, labels.size, first, first + labels.size, digest(images, labels), test != null)
        val all = JSONArray()
        for (e in entries + entry) all.put(JSONObject().put("classes", JSONArray(e.classes.toList())).put("examples", e.examples)
            .put("first_id", e.firstId).put("end_id", e.endId).put("digest", e.digest).put("test", e.hasTest))
        atomically(file) { out -> out.write(JSONObject().put("tasks", all).toString().toByteArray()) }
        entries.add(entry)
        return entry
    }

    /** The test set of task [index] (none: empty), read from the folder (a host's: test_<t>.npz). */
    fun test(index: Int): TaskExamples {
        if (!entries[index].hasTest) return TaskExamples(ImageSet.ofFloats(FloatArray(0), imageSize), IntArray(0), IntArray(0))
        val fromHost = File(folder, "test_$index.npz")
        if (!testFile(index).exists() && fromHost.exists()) {
            val arrays = readNpz(fromHost)
            val labels = (arrays["labels"] ?: throw SessionError("$fromHost lacks 'labels'")).ints()
            val images = (arrays["images"] ?: throw SessionError("$fromHost lacks 'images'")).images(imageSize)
            return TaskExamples(images, labels, IntArray(labels.size) { it })
        }
        return try {
            DataInputStream(testFile(index).inputStream().buffered()).use { input ->
                val images = ImageSet.read(input, imageSize)
                val labels = IntArray(input.readInt()) { input.readInt() }
                TaskExamples(images, labels, IntArray(labels.size) { it })
            }
        } catch (error: IOException) {
            throw SessionError("cannot read the test set of task $index in $folder: ${error.message}")
        }
    }

    private fun testFile(index: Int) = File(folder, "test_$index.bin")

    private fun atomically(target: File, write: (DataOutputStream) -> Unit) {
        val temporary = File(folder, "${target.name}.tmp")
        try {
            FileOutputStream(temporary).use { stream ->
                DataOutputStream(stream.buffered()).also(write).flush()
                stream.fd.sync()
            }
            if (!temporary.renameTo(target)) throw IOException("cannot rename $temporary")
        } catch (error: IOException) {
            throw SessionError("cannot write $target: ${error.message}")
        }
    }

    companion object {
        fun digest(images: ImageSet, labels: IntArray): String {
            val digest = MessageDigest.getInstance("SHA-256")
            images.update(digest)
            labels.forEach { digest.update(byteArrayOf((it shr 24).toByte(), (it shr 16).toByte(), (it shr 8).toByte(), it.toByte())) }
            return digest.digest().joinToString("") { "%02x".format(it) }
        }
    }
}
