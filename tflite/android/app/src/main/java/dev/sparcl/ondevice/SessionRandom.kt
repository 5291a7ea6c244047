package dev.sparcl.ondevice

/**
 * The session's portable random stream: SplitMix64, keyed and counter-based, bit for bit the
 * Python `sparcl_tf/session/random.py` (spec and test vectors: tflite/README.md). A draw depends
 * only on its key (seed, purpose, positions), so nothing random is saved in a state file.
 */
class SessionRandom(seed: Long, purpose: Int, vararg fields: Long) {
    private val key: ULong

    init {
        var k = seed.toULong()
        k = mix(k + GAMMA * (purpose.toULong() + 1uL))
        for (field in fields) k = mix(k + GAMMA * (field.toULong() + 1uL))
        key = k
    }

    /** The stream's [n]th 64-bit output. */
    fun output(n: Long): ULong = mix(key + GAMMA * (n.toULong() + 1uL))

    /** below(output n, bound) = floor(double(u >> 11) * 2^-53 * bound), in [0, bound). */
    fun below(n: Long, bound: Long): Long =
        Math.floor((output(n) shr 11).toLong().toDouble() * TWO_TO_MINUS_53 * bound.toDouble()).toLong()

    /** Fisher-Yates from the top: m - 1 outputs. */
    fun permutation(m: Int): IntArray {
        val a = IntArray(m) { it }
        var step = 0L
        for (i in m - 1 downTo 1) {
            val j = below(step++, (i + 1).toLong()).toInt()
            val t = a[i]; a[i] = a[j]; a[j] = t
        }
        return a
    }

    /** k distinct integers of [0, m), in draw order (partial Fisher-Yates). */
    fun distinct(m: Int, k: Int): IntArray {
        val count = minOf(k, m)
        val a = IntArray(m) { it }
        for (i in 0 until count) {
            val j = i + below(i.toLong(), (m - i).toLong()).toInt()
            val t = a[i]; a[i] = a[j]; a[j] = t
        }
        return a.copyOf(count)
    }

    companion object {
        const val EPOCH_ORDER = 1
        const val RESERVOIR = 2
        const val REPLAY = 3
        const val AUGMENT = 4
        const val REMOVAL = 5
        const val GROWTH = 6
        private const val GAMMA = 0x9E3779B97F4A7C15uL
        private const val TWO_TO_MINUS_53 = 1.0 / (1L shl 53)

        fun mix(input: ULong): ULong {
            var z = input
            z = (z xor (z shr 30)) * 0xBF58476D1CE4E5B9uL
            z = (z xor (z shr 27)) * 0x94D049BB133111EBuL
            return z xor (z shr 31)
        }
    }
}
