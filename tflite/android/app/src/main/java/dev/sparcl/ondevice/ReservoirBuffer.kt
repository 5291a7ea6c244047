package dev.sparcl.ondevice

/**
 * The replay buffer, bit for bit `sparcl_tf/replay/buffer.py`: reservoir sampling over every
 * example offered (the p-th goes to slot p while filling, else to slot below(reservoir output p,
 * p + 1) if that is a slot), storing the un-augmented prepared image, label, the logits `train`
 * returned, task id and example id. Draws come from the replay stream of (step, draw).
 */
class ReservoirBuffer(val capacity: Int, private val imageSize: Int, private val numClasses: Int, private val seed: Long) {
    val images = FloatArray(capacity * imageSize)
    val labels = IntArray(capacity)
    val logits = FloatArray(capacity * numClasses)
    val taskIds = IntArray(capacity)
    val exampleIds = IntArray(capacity) { -1 }
    var seen = 0L
    private val reservoir = SessionRandom(seed, SessionRandom.RESERVOIR)

    val size: Int get() = minOf(seen, capacity.toLong()).toInt()

    /** Offers a batch (images, labels, the logits the step returned, its task, example ids) to the reservoir: the example seen p-th takes a slot while there are free ones, then slot `below(p, p + 1)` of the buffer's stream if that is one. */
    fun add(batchImages: FloatArray, batchLabels: IntArray, batchLogits: FloatArray, task: Int, ids: IntArray) {
        if (capacity == 0) return
        for (row in batchLabels.indices) {
            val p = seen + row
            val slot = if (p < capacity) p else reservoir.below(p, p + 1)
            if (slot < capacity) {
                val s = slot.toInt()
                System.arraycopy(batchImages, row * imageSize, images, s * imageSize, imageSize)
                System.arraycopy(batchLogits, row * numClasses, logits, s * numClasses, numClasses)
                labels[s] = batchLabels[row]; taskIds[s] = task; exampleIds[s] = ids[row]
            }
        }
        seen += batchLabels.size
    }

    /** Slots of draw [draw] at [step]: distinct while the buffer holds [count], cycled when fewer. */
    fun sample(count: Int, step: Long, draw: Int): IntArray {
        val distinct = SessionRandom(seed, SessionRandom.REPLAY, step, draw.toLong()).distinct(size, count)
        return IntArray(count) { distinct[it % distinct.size] }
    }
}
