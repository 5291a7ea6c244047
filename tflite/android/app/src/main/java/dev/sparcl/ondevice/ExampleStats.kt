package dev.sparcl.ondevice

/**
 * Per-example statistics since the last removal stage, and the removal order, as
 * `sparcl_tf/example_stats.py` and `sparcl_tf/sparsity/ddr.py`: fewest forgetting events first
 * (never correct counts as the most), then the larger last margin, then the stage's permutation.
 */
class ExampleStats(size: Int) {
    var presentations = IntArray(size); private set
    var correct = IntArray(size); private set
    var lastCorrect = IntArray(size); private set
    var forgettingEvents = IntArray(size); private set
    var lastMargin = FloatArray(size); private set
    val size: Int get() = presentations.size

    /** Grows the tables to hold ids below [ids] (tasks arrive with new ids; nothing is lost). */
    fun ensure(ids: Int) {
        if (ids <= size) return
        presentations = presentations.copyOf(ids); correct = correct.copyOf(ids); lastCorrect = lastCorrect.copyOf(ids)
        forgettingEvents = forgettingEvents.copyOf(ids); lastMargin = lastMargin.copyOf(ids)
    }

    /** Records one step's outcome for examples [ids]: correct or not (argmax over all logits) and the margin. */
    fun observe(ids: IntArray, isCorrect: BooleanArray, margins: FloatArray) {
        for ((i, id) in ids.withIndex()) {
            val now = if (isCorrect[i]) 1 else 0
            forgettingEvents[id] += (if (presentations[id] > 0) 1 else 0) * lastCorrect[id] * (1 - now)
            presentations[id] += 1
            correct[id] += now
            lastCorrect[id] = now
            lastMargin[id] = margins[i]
        }
    }

    /** Forgets every statistic (a new removal stage counts afresh). */
    fun reset() {
        presentations.fill(0); correct.fill(0); lastCorrect.fill(0); forgettingEvents.fill(0); lastMargin.fill(0f)
    }

    /** The [count] easiest presented [candidates]; [tieBreak] orders exact ties (a permutation of positions). */
    fun removals(candidates: IntArray, tieBreak: IntArray, count: Int): IntArray {
        val events = LongArray(candidates.size) { val id = candidates[it]; if (correct[id] > 0) forgettingEvents[id].toLong() else Int.MAX_VALUE.toLong() }
        val order = candidates.indices.sortedWith { a, b ->
            val ma = lastMargin[candidates[a]]
            val mb = lastMargin[candidates[b]]
            when {
                events[a] != events[b] -> events[a].compareTo(events[b])
                ma > mb -> -1   // IEEE comparisons: -0.0 and 0.0 tie, as numpy's lexsort has them
                ma < mb -> 1
                else -> tieBreak[a].compareTo(tieBreak[b])
            }
        }
        return order.filter { presentations[candidates[it]] > 0 }.take(maxOf(count, 0)).map { candidates[it] }.toIntArray()
    }

    companion object {
        /** True-class logit minus the largest other logit, per row of [logits] ([classes] wide). */
        fun margins(logits: FloatArray, labels: IntArray, classes: Int): FloatArray = FloatArray(labels.size) { row ->
            var best = Float.NEGATIVE_INFINITY
            for (c in 0 until classes) if (c != labels[row]) best = maxOf(best, logits[row * classes + c])
            logits[row * classes + labels[row]] - best
        }
    }
}
