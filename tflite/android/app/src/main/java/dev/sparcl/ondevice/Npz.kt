package dev.sparcl.ondevice

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.zip.ZipFile

/** One array of a .npy file: its shape, numpy dtype string and little-endian bytes. */
class NpyArray(val shape: IntArray, val dtype: String, val data: ByteBuffer) {
    val count: Int get() = shape.fold(1) { product, dimension -> product * dimension }

    /** The values as ints (int32, int64 that fit, or uint8 arrays; a [SessionError] otherwise). */
    fun ints(): IntArray = when (dtype) {
        "<i4" -> IntArray(count) { data.getInt(it * 4) }
        "<i8" -> IntArray(count) { i -> data.getLong(i * 8).let { if (it in Int.MIN_VALUE..Int.MAX_VALUE) it.toInt() else throw SessionError("value $it does not fit an int") } }
        "|u1" -> IntArray(count) { data.get(it).toInt() and 0xFF }
        else -> throw SessionError("array of dtype $dtype where integers were expected")
    }

    /** The values of a float32 array (a [SessionError] for other dtypes). */
    fun floats(): FloatArray = when (dtype) {
        "<f4" -> FloatArray(count) { data.getFloat(it * 4) }
        else -> throw SessionError("array of dtype $dtype where float32 was expected")
    }

    /** The values as longs (int64 arrays, or what [ints] reads). */
    fun longs(): LongArray = when (dtype) {
        "<i8" -> LongArray(count) { data.getLong(it * 8) }
        else -> ints().map { it.toLong() }.toLongArray()
    }

    /** The raw little-endian bytes (a model variable's, as `get_state` gives them). */
    fun bytes(): ByteArray = ByteArray(data.remaining()).also { data.duplicate().get(it) }

    /** The values as images of [imageSize] values (uint8 pixels or float32 in [0, 1]; a [SessionError] otherwise). */
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
    throw SessionError("cannot read data file $file: ${if (!file.exists()) "no such file" else error.message}")
}
