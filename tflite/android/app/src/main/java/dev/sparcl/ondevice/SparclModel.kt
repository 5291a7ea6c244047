package dev.sparcl.ondevice

import java.nio.ByteBuffer

/** What one `train` call returns: the step's loss, the current batch's logits and per-example correctness, and each sparse layer's gradient density. */
class StepOutputs(val loss: Float, val logits: FloatArray, val correct: FloatArray, val gradientDensity: FloatArray)

/**
 * The converted training model's signatures as typed calls, checked against the session plan on
 * construction (one SessionError listing every mismatch): `train`, `update_masks`, `infer`,
 * `get_state` / `set_state` (the model's whole state as raw bytes per variable).
 */
class SparclModel(private val model: TrainingModel, private val plan: SessionPlan) {
    private val signatures = model.signatures
    /** Every variable `get_state` returns, by name, with its shape and element type. */
    val stateSpec: Map<String, TensorSpec>
    /** Whether `train` takes the DGM refresh input (the model was exported with gradient masks). */
    val hasGradientMasks: Boolean
    private val trainInputs: Map<String, ByteBuffer>
    private val inferInputs: Map<String, ByteBuffer>

    init {
        val missing = listOf("train", "infer", "get_state", "set_state").filter { it !in signatures } +
            (if (plan.hasMaskUpdates && "update_masks" !in signatures) listOf("update_masks") else emptyList())
        if (missing.isNotEmpty())
            throw SessionError("the model lacks the signatures $missing (has ${signatures.keys.sorted()}); convert it with tools.convert")
        signatures.forEach { (key, signature) -> JavaApiRules.checkSignature(key, signature) }
        val train = signatures.getValue("train").inputs
        val image = plan.imageShape.toList()
        val expected = mutableMapOf(
            "train images" to (train["images"]?.shape?.toList() to listOf(plan.batchSize) + image),
            "train labels" to (train["labels"]?.shape?.toList() to listOf(plan.batchSize)),
            "train class_mask" to (train["class_mask"]?.shape?.toList() to listOf(plan.numClasses)),
            "infer images" to (signatures.getValue("infer").inputs["images"]?.shape?.toList() to listOf(plan.batchSize) + image),
            "replay draws" to (train["replay_images"]?.shape?.toList() to
                if (plan.replayDraws > 0) listOf(plan.replayDraws, plan.replayBatchSize) + image else null),
            "DGM refresh input" to (train["refresh_gradient_masks"]?.shape?.toList() to if (plan.dgmRefreshEvery > 0) listOf<Int>() else null),
            "learning rate input" to (train["learning_rate"]?.shape?.toList() to listOf<Int>()),
            "get_state input" to (signatures.getValue("get_state").inputs["dummy"]?.shape?.toList() to listOf<Int>()),
        )
        if (plan.hasMaskUpdates) expected["update_masks prune_to"] =
            signatures.getValue("update_masks").inputs["prune_to"]?.shape?.toList() to listOf(plan.sparseLayers.size)
        val types = mapOf("images" to ElementType.FLOAT32, "labels" to ElementType.INT32, "class_mask" to ElementType.FLOAT32,
            "replay_images" to ElementType.FLOAT32, "replay_labels" to ElementType.INT32, "replay_logits" to ElementType.FLOAT32,
            "replay_weight" to ElementType.FLOAT32, "refresh_gradient_masks" to ElementType.FLOAT32, "learning_rate" to ElementType.FLOAT32)
        val typeGaps = train.filter { (name, spec) -> name in types && spec.type != types[name] }
            .map { (name, spec) -> "train $name: model ${spec.type.name.lowercase()}, session ${types.getValue(name).name.lowercase()}" }
        val gaps = expected.filter { (_, pair) -> pair.first != pair.second }
            .map { (what, pair) -> "$what: model ${pair.first ?: "none"}, plan ${pair.second ?: "none"}" } + typeGaps
        if (gaps.isNotEmpty())
            throw SessionError("the model does not match its session plan (${gaps.joinToString("; ")}); convert it again")
        stateSpec = signatures.getValue("set_state").inputs
        hasGradientMasks = "refresh_gradient_masks" in train
        trainInputs = train.mapValues { (_, spec) -> directBuffer(spec.bytes) }
        inferInputs = signatures.getValue("infer").inputs.mapValues { (_, spec) -> directBuffer(spec.bytes) }
    }

    private fun put(buffer: ByteBuffer, values: FloatArray) { buffer.clear(); buffer.asFloatBuffer().put(values) }
    private fun put(buffer: ByteBuffer, values: IntArray) { buffer.clear(); buffer.asIntBuffer().put(values) }
    private fun floats(buffer: ByteBuffer) = FloatArray(buffer.capacity() / 4).also { buffer.asFloatBuffer().get(it) }
    private fun ints(buffer: ByteBuffer) = IntArray(buffer.capacity() / 4).also { buffer.asIntBuffer().get(it) }

    /** One training step on host-made inputs (replay arrays sized draws x replay batch, zeros when off). */
    fun train(images: FloatArray, labels: IntArray, classMask: FloatArray, replayImages: FloatArray?, replayLabels: IntArray?,
              replayLogits: FloatArray?, replayWeight: Float, refresh: Boolean, learningRate: Float): StepOutputs {
        put(trainInputs.getValue("images"), images)
        put(trainInputs.getValue("labels"), labels)
        put(trainInputs.getValue("class_mask"), classMask)
        trainInputs["replay_images"]?.let { put(it, replayImages!!) }
        trainInputs["replay_labels"]?.let { put(it, replayLabels!!) }
        trainInputs["replay_logits"]?.let { put(it, replayLogits!!) }
        trainInputs["replay_weight"]?.let { put(it, floatArrayOf(replayWeight)) }
        trainInputs["refresh_gradient_masks"]?.let { put(it, floatArrayOf(if (refresh) 1f else 0f)) }
        put(trainInputs.getValue("learning_rate"), floatArrayOf(learningRate))
        val out = model.run("train", trainInputs)
        return StepOutputs(floats(out.getValue("loss"))[0], floats(out.getValue("logits")), floats(out.getValue("correct")),
            floats(out.getValue("gradient_density")))
    }

    /** Runs `update_masks` with per-layer active counts [pruneTo] then [growTo] and the growth [seed]; returns the active counts after it. */
    fun updateMasks(pruneTo: IntArray, growTo: IntArray, seed: Int): IntArray {
        val out = model.run("update_masks", mapOf(
            "prune_to" to directBuffer(pruneTo.size * 4).also { put(it, pruneTo) },
            "grow_to" to directBuffer(growTo.size * 4).also { put(it, growTo) },
            "seed" to directBuffer(4).also { put(it, intArrayOf(seed)) }))
        return ints(out.getValue("active"))
    }

    /** Logits of [count] prepared images, run in the signature's fixed batch (the last one zero-padded). */
    fun infer(images: FloatArray, count: Int): FloatArray {
        val logits = FloatArray(count * plan.numClasses)
        val batch = plan.batchSize
        val size = plan.imageSize
        for (start in 0 until count step batch) {
            val rows = minOf(batch, count - start)
            val chunk = FloatArray(batch * size)
            System.arraycopy(images, start * size, chunk, 0, rows * size)
            put(inferInputs.getValue("images"), chunk)
            val out = floats(model.run("infer", inferInputs).getValue("logits"))
            System.arraycopy(out, 0, logits, start * plan.numClasses, rows * plan.numClasses)
        }
        return logits
    }

    /** Every variable's bytes, by name (what a state file stores). */
    fun getState(): Map<String, ByteArray> =
        model.run("get_state", mapOf("dummy" to directBuffer(4))).mapValues { (_, buffer) ->
            ByteArray(buffer.capacity()).also { buffer.get(it) } }

    /** Writes every variable; [state] must name each one with exactly its bytes. */
    fun setState(state: Map<String, ByteArray>) {
        val missing = stateSpec.keys - state.keys
        val unknown = state.keys - stateSpec.keys
        if (missing.isNotEmpty() || unknown.isNotEmpty())
            throw SessionError("state does not match the model: missing ${missing.sorted().take(5)}, unknown ${unknown.sorted().take(5)}")
        val inputs = stateSpec.mapValues { (name, spec) ->
            val bytes = state.getValue(name)
            if (bytes.size != spec.bytes) throw SessionError("state '$name' has ${bytes.size} bytes; the model's $spec needs ${spec.bytes}")
            directBuffer(spec.bytes).also { it.put(bytes); it.rewind() }
        }
        model.run("set_state", inputs)
    }
}
