package dev.sparcl.ondevice

/**
 * Host-side augmentation drawn from the session stream, as `sparcl_tf/data/augment.py`: per
 * batch (step, batch 0 current / 1.. replay draws), random crop after padding with the value a
 * black pixel has after normalisation (output 2i row, 2i+1 column offset), then for crop_flip a
 * horizontal flip (output 2B + i). Pixels go through (x - fill) + fill in float32, as the
 * trainer's padding does, so the bits agree.
 */
class Augment(private val plan: SessionPlan) {
    private val height = plan.imageShape[0]
    private val width = plan.imageShape[1]
    private val channels = plan.imageShape[2]
    private val fill = FloatArray(channels) { -plan.mean[it] / plan.std[it] }

    /** [count] normalised images augmented as the plan says (random crop and flip drawn from the session stream for [step] and [batch]); the images themselves when the plan has none. */
    fun apply(images: FloatArray, count: Int, step: Long, batch: Int): FloatArray {
        if (plan.augmentation == "none" || count == 0) return images
        val stream = SessionRandom(plan.seed, SessionRandom.AUGMENT, step, batch.toLong())
        var out = images
        val p = plan.cropPadding
        if (p > 0) out = crop(out, count, stream, p)
        if (plan.augmentation == "crop_flip") out = flip(out, count, stream)
        return out
    }

    private fun crop(images: FloatArray, count: Int, stream: SessionRandom, p: Int): FloatArray {
        val out = FloatArray(images.size)
        val size = height * width * channels
        val bound = (2 * p + 1).toLong()
        for (i in 0 until count) {
            val top = stream.below(2L * i, bound).toInt() - p
            val left = stream.below(2L * i + 1, bound).toInt() - p
            for (r in 0 until height) for (c in 0 until width) for (k in 0 until channels) {
                val sr = r + top
                val sc = c + left
                out[i * size + (r * width + c) * channels + k] =
                    if (sr in 0 until height && sc in 0 until width)
                        (images[i * size + (sr * width + sc) * channels + k] - fill[k]) + fill[k]
                    else 0f + fill[k]
            }
        }
        return out
    }

    private fun flip(images: FloatArray, count: Int, stream: SessionRandom): FloatArray {
        val out = images.copyOf()
        val size = height * width * channels
        for (i in 0 until count) {
            if (stream.below(2L * count + i, 2) != 1L) continue
            for (r in 0 until height) for (c in 0 until width) for (k in 0 until channels)
                out[i * size + (r * width + c) * channels + k] = images[i * size + (r * width + (width - 1 - c)) * channels + k]
        }
        return out
    }
}
