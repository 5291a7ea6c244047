package dev.sparcl.ondevice

import kotlin.random.Random

/**
 * The replay buffer the app keeps (the model only trains): reservoir sampling (Algorithm R) over
 * every example the train step has seen, storing the normalised image, its label and the logits
 * the train step returned for it (DER / DER++ match them later).
 */
class ReservoirBuffer(private val capacity: Int, private val imageSize: Int,
                      private val numClasses: Int, seed: Long) {
    class Draw(val images: FloatArray, val labels: IntArray, val logits: FloatArray)

    private val images = FloatArray(capacity * imageSize)
    private val labels = IntArray(capacity)
    private val logits = FloatArray(capacity * numClasses)
    private val random = Random(seed)
    var seen = 0L
        private set
    val size: Int get() = minOf(seen, capacity.toLong()).toInt()

    /** Offers example [index] of a batch (images/labels/logits laid out row after row). */
    fun offer(batchImages: FloatArray, batchLabels: IntArray, batchLogits: FloatArray, index: Int) {
        val slot = if (seen < capacity) seen.toInt() else random.nextLong(seen + 1).toInt()
        seen++
        if (slot >= capacity) return
        batchImages.copyInto(images, slot * imageSize, index * imageSize, (index + 1) * imageSize)
        labels[slot] = batchLabels[index]
        batchLogits.copyInto(logits, slot * numClasses, index * numClasses,
                             (index + 1) * numClasses)
    }

    /** [count] stored examples, distinct while the buffer holds that many, else repeated. */
    fun sample(count: Int): Draw {
        check(size > 0) { "the buffer is empty" }
        val order = (0 until size).shuffled(random)
        val draw = Draw(FloatArray(count * imageSize), IntArray(count), FloatArray(count * numClasses))
        for (i in 0 until count) {
            val slot = order[i % size]
            images.copyInto(draw.images, i * imageSize, slot * imageSize, (slot + 1) * imageSize)
            draw.labels[i] = labels[slot]
            logits.copyInto(draw.logits, i * numClasses, slot * numClasses,
                            (slot + 1) * numClasses)
        }
        return draw
    }
}
