package dev.sparcl.ondevice

import java.io.ByteArrayOutputStream
import java.io.DataInputStream
import java.io.DataOutputStream
import java.io.EOFException
import java.io.File
import java.io.FileOutputStream
import java.nio.ByteBuffer
import java.util.zip.CRC32

/**
 * A session's state files in one folder: `state-<n>.bin`, each everything a session needs to go
 * on (model variables, replay buffer, example statistics, progress), written to a temporary file,
 * synced and renamed, so a kill at any moment leaves the previous file whole; the last [keep] are
 * kept. A file records the plan's and the model's fingerprints and ends with a CRC32: a file of
 * another plan or model, or a truncated one, is one SessionError and is never overwritten.
 *
 * Layout (big-endian): "SPARCLST", format version, plan version, plan fingerprint, model
 * fingerprint, record count, records (name, kind I/J/F/D/B, length, values), CRC32 of the rest.
 */
class StateFiles(private val folder: File, private val planFingerprint: Long, private val modelFingerprint: Long, private val keep: Int = 2) {
    class Records {
        val ints = LinkedHashMap<String, IntArray>()
        val longs = LinkedHashMap<String, LongArray>()
        val floats = LinkedHashMap<String, FloatArray>()
        val doubles = LinkedHashMap<String, DoubleArray>()
        val bytes = LinkedHashMap<String, ByteArray>()

        private val read = HashSet<String>()
        private fun <T> need(map: Map<String, T>, name: String): T =
            (map[name] ?: throw SessionError("state file lacks '$name'")).also { read.add(name) }
        fun int(name: String) = need(ints, name)
        fun long(name: String) = need(longs, name)
        fun float(name: String) = need(floats, name)
        fun double(name: String) = need(doubles, name)
        fun optionalInts(name: String): IntArray? = ints[name].also { read.add(name) }

        /** The byte records under [prefix], by the rest of their names. */
        fun bytesUnder(prefix: String): Map<String, ByteArray> =
            bytes.filterKeys { it.startsWith(prefix) }.also { read.addAll(it.keys) }.mapKeys { it.key.removePrefix(prefix) }

        /** A [SessionError] when the file holds records the reader never asked for (another build's). */
        fun checkNothingUnknown() {
            val unknown = (ints.keys + longs.keys + floats.keys + doubles.keys + bytes.keys) - read
            if (unknown.isNotEmpty()) throw SessionError("state file has records this session does not know: ${unknown.sorted().take(5)}")
        }
    }

    private fun files(): List<Pair<Long, File>> = (folder.listFiles() ?: emptyArray())
        .mapNotNull { file -> NAME.matchEntire(file.name)?.let { it.groupValues[1].toLong() to file } }
        .sortedBy { it.first }

    /** The newest complete state file, or null when the folder has none. */
    fun latest(): File? = files().lastOrNull()?.second

    /** Writes [records] as the next state file: a temporary file, synced, then renamed, so a kill leaves the previous one whole; keeps the last two. */
    fun save(records: Records) {
        if (!folder.isDirectory && !folder.mkdirs()) throw SessionError("cannot create the state folder $folder")
        val number = (files().lastOrNull()?.first ?: 0L) + 1
        val target = File(folder, "state-$number.bin")
        val temporary = File(folder, "state-$number.bin.tmp")
        val body = ByteArrayOutputStream()
        DataOutputStream(body).use { out ->
            out.write(MAGIC); out.writeInt(FORMAT); out.writeInt(SessionPlan.VERSION)
            out.writeLong(planFingerprint); out.writeLong(modelFingerprint)
            out.writeInt(records.ints.size + records.longs.size + records.floats.size + records.doubles.size + records.bytes.size)
            fun header(name: String, kind: Char, length: Int) { out.writeUTF(name); out.writeByte(kind.code); out.writeInt(length) }
            for ((name, v) in records.ints) { header(name, 'I', v.size); v.forEach(out::writeInt) }
            for ((name, v) in records.longs) { header(name, 'J', v.size); v.forEach(out::writeLong) }
            for ((name, v) in records.floats) {
                header(name, 'F', v.size)
                out.write(ByteBuffer.allocate(v.size * 4).also { it.asFloatBuffer().put(v) }.array())
            }
            for ((name, v) in records.doubles) { header(name, 'D', v.size); v.forEach(out::writeDouble) }
            for ((name, v) in records.bytes) { header(name, 'B', v.size); out.write(v) }
        }
        val content = body.toByteArray()
        val crc = CRC32().apply { update(content) }.value
        try {
            FileOutputStream(temporary).use { stream ->
                stream.write(content)
                stream.write(ByteBuffer.allocate(8).putLong(crc).array())
                stream.fd.sync()
            }
        } catch (error: java.io.IOException) {
            temporary.delete()
            throw SessionError("cannot write state file $temporary: ${error.message}")
        }
        if (!temporary.renameTo(target)) throw SessionError("cannot move $temporary to $target")
        files().dropLast(keep).forEach { it.second.delete() }
        folder.listFiles()?.filter { it.name.endsWith(".tmp") && it != temporary }?.forEach { it.delete() }
    }

    /** The records of [file], or one SessionError saying what is wrong with it. */
    fun load(file: File): Records {
        val content = try { file.readBytes() } catch (error: java.io.IOException) {
            throw SessionError("cannot read state file $file: ${error.message}")
        }
        if (content.size < MAGIC.size || !content.copyOf(MAGIC.size).contentEquals(MAGIC))
            throw SessionError("$file is not a sparcl session state file")
        if (content.size < MAGIC.size + 40)
            throw SessionError("state file $file is truncated (${content.size} bytes)")
        val crc = CRC32().apply { update(content, 0, content.size - 8) }.value
        if (ByteBuffer.wrap(content, content.size - 8, 8).long != crc)
            throw SessionError("state file $file is truncated or corrupt (checksum mismatch)")
        val input = DataInputStream(content.inputStream(MAGIC.size, content.size - 8 - MAGIC.size))
        try {
            val format = input.readInt()
            val planVersion = input.readInt()
            if (format != FORMAT || planVersion != SessionPlan.VERSION)
                throw SessionError("state file $file has format $format for plan version $planVersion; this session reads format $FORMAT, plan version ${SessionPlan.VERSION}")
            if (input.readLong() != planFingerprint) throw SessionError("state file $file was written for another session plan")
            if (input.readLong() != modelFingerprint) throw SessionError("state file $file was written for another model (its variables differ)")
            val records = Records()
            repeat(input.readInt()) {
                val name = input.readUTF()
                val kind = input.readByte().toInt().toChar()
                val length = input.readInt()
                if (length < 0 || length > content.size) throw SessionError("state file $file is corrupt (record '$name')")
                when (kind) {
                    'I' -> records.ints[name] = IntArray(length) { input.readInt() }
                    'J' -> records.longs[name] = LongArray(length) { input.readLong() }
                    'F' -> records.floats[name] = FloatArray(length) { input.readFloat() }
                    'D' -> records.doubles[name] = DoubleArray(length) { input.readDouble() }
                    'B' -> records.bytes[name] = ByteArray(length).also { input.readFully(it) }
                    else -> throw SessionError("state file $file is corrupt (record '$name' of kind $kind)")
                }
            }
            return records
        } catch (error: EOFException) {
            throw SessionError("state file $file is truncated")
        }
    }

    companion object {
        /** The state files of a session of [plan] over [model] in [folder]. */
        fun of(folder: File, plan: SessionPlan, model: SparclModel) = StateFiles(folder, plan.fingerprint, fingerprint(model.stateSpec))

        private val MAGIC = "SPARCLST".toByteArray()
        private const val FORMAT = 1
        private val NAME = Regex("state-(\\d+)\\.bin")

        /** CRC32 of a model's variable names, types and shapes. */
        fun fingerprint(spec: Map<String, TensorSpec>): Long =
            CRC32().apply { update(spec.toSortedMap().entries.joinToString(";") { "${it.key}=${it.value}" }.toByteArray()) }.value
    }
}
