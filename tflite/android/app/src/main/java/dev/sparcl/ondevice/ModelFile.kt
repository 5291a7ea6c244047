package dev.sparcl.ondevice

import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.security.MessageDigest

/**
 * A model's bytes checked before native code sees them: a truncated or foreign file would crash
 * the process inside the runtime, not raise. Structure: the TFLite file identifier, the root
 * table, the subgraphs' tensors and every buffer's bytes inside the file (what a cut file loses).
 * Content: the SHA-256 that signatures.json carries
 * (`model_sha256`, written at conversion), which catches damage in the weights' bytes that no
 * structural check sees. Every failure is one [SessionError] line naming [name].
 */
object ModelFile {
    private const val IDENTIFIER = "TFL3"

    /** Checks [model] (its position and limit are left as they were); [sha256]: the plan's, or null. */
    fun verify(model: ByteBuffer, sha256: String?, name: String) {
        val bytes = model.slice().order(ByteOrder.LITTLE_ENDIAN)
        val size = bytes.remaining()
        if (size < 16) throw SessionError("$name is not a .tflite model ($size bytes)")
        val identifier = String(ByteArray(4) { bytes.get(4 + it) }, Charsets.US_ASCII)
        if (identifier != IDENTIFIER) throw SessionError("$name is not a .tflite model (file identifier '$identifier', not '$IDENTIFIER')")
        try {
            Tables(bytes).checkModel()
        } catch (error: IndexOutOfBoundsException) {
            throw SessionError("$name is truncated or corrupt (${error.message})")
        }
        if (sha256 != null && sha256(bytes) != sha256)
            throw SessionError("$name does not match the model_sha256 of its signatures.json: the file is damaged or was replaced; convert the run again")
    }

    /** Flatbuffer tables of a model, read with every offset checked to lie inside the file. */
    private class Tables(private val bytes: ByteBuffer) {
        private val size = bytes.limit()

        private fun inside(at: Long, length: Long, what: String): Int {
            if (at < 0 || length < 0 || at + length > size) throw IndexOutOfBoundsException("$what at $at+$length of $size bytes")
            return at.toInt()
        }
        private fun uint(at: Int) = bytes.getInt(inside(at.toLong(), 4, "offset")).toLong() and 0xFFFFFFFFL
        private fun target(at: Int, what: String) = inside(at + uint(at), 4, what)

        /** The position of field [index] of the table at [table], or -1 when absent. */
        private fun field(table: Int, index: Int): Int {
            val vtable = inside(table.toLong() - bytes.getInt(inside(table.toLong(), 4, "table")), 4, "vtable")
            val vtableSize = bytes.getShort(vtable).toInt() and 0xFFFF
            val slot = 4 + 2 * index
            if (slot + 2 > vtableSize) return -1
            val offset = bytes.getShort(inside(vtable.toLong() + slot, 2, "vtable")).toInt() and 0xFFFF
            return if (offset == 0) -1 else inside(table.toLong() + offset, 4, "field")
        }

        /** Tables of the vector at field [index] of [table] (none when absent). */
        private fun vectorOfTables(table: Int, index: Int, what: String): List<Int> {
            val at = field(table, index).takeIf { it >= 0 } ?: return emptyList()
            val vector = target(at, what)
            val count = uint(vector)
            inside(vector + 4L, 4 * count, what)
            return List(count.toInt()) { target(vector + 4 + 4 * it, what) }
        }

        /** Model: its subgraphs, and every buffer's bytes (inline data or the appended offset/size). */
        fun checkModel() {
            val root = target(0, "root table")
            vectorOfTables(root, 2, "subgraphs").forEach { subgraph -> vectorOfTables(subgraph, 0, "tensors") }
            for (buffer in vectorOfTables(root, 4, "buffers")) {
                field(buffer, 0).takeIf { it >= 0 }?.let { at -> target(at, "buffer data").let { data -> inside(data + 4L, uint(data), "buffer data") } }
                val offset = field(buffer, 1).takeIf { it >= 0 }?.let { bytes.getLong(inside(it.toLong(), 8, "buffer offset")) } ?: 0L
                val length = field(buffer, 2).takeIf { it >= 0 }?.let { bytes.getLong(inside(it.toLong(), 8, "buffer size")) } ?: 0L
                if (offset > 1) inside(offset, length, "buffer data")
            }
        }
    }

    private fun sha256(bytes: ByteBuffer): String {
        val digest = MessageDigest.getInstance("SHA-256")
        digest.update(bytes.duplicate().also { it.rewind() })
        return digest.digest().joinToString("") { "%02x".format(it) }
    }
}
