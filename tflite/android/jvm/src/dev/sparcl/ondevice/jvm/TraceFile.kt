package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.SessionError
import java.io.BufferedWriter
import java.io.File
import java.io.FileWriter
import java.io.IOException
import org.json.JSONObject

/** The session's trace as JSON lines at [path] (`--trace`; `sparcl_tf/session/trace.py`'s records), flushed per record. */
class TraceFile(path: String, append: Boolean) : AutoCloseable {
    private val writer: BufferedWriter

    init {
        val file = File(path).absoluteFile
        if (file.isDirectory) throw SessionError("--trace $path cannot be used: it is a folder, not a file")
        if (!file.parentFile.isDirectory && !file.parentFile.mkdirs()) throw SessionError("--trace's folder ${file.parentFile} cannot be made")
        writer = try { FileWriter(file, append).buffered() } catch (error: IOException) {
            throw SessionError("--trace $path cannot be written: ${error.message}")
        }
    }

    fun write(record: JSONObject) {
        writer.write(record.toString()); writer.newLine(); writer.flush()
    }

    override fun close() = writer.close()
}
