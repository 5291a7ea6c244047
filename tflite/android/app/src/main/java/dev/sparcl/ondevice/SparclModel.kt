package dev.sparcl.ondevice

import java.io.DataInputStream
import java.io.DataOutputStream
import java.io.File
import java.io.FileInputStream
import java.io.FileOutputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import org.tensorflow.lite.Interpreter

/**
 * The training .tflite written by `python -m tools.convert`, called through LiteRT signatures.
 *
 * Every call goes through [Interpreter.runSignature] with direct ByteBuffers sized from the
 * signature's own tensors ([Interpreter.getInputTensorFromSignature] /
 * [Interpreter.getOutputTensorFromSignature]), so shapes and dtypes always come from the model
 * (they are listed in signatures.json too). The model file holds the weights it was converted
 * with; the state of a training session lives in the app's own state file (see [saveState]).
 */
class SparclModel(modelFile: File, numThreads: Int = 2) : AutoCloseable {
    private val interpreter = Interpreter(modelFile, Interpreter.Options().setNumThreads(numThreads))

    init {
        val keys = interpreter.signatureKeys.toSet()
        val missing = listOf("infer", "train", "get_state", "set_state").filterNot { it in keys }
        require(missing.isEmpty()) { "$modelFile lacks the signatures $missing (has $keys)" }
    }

    val batchSize: Int = inputTensor("infer", "images").shape()[0]
    val imageSize: Int = inputTensor("infer", "images").shape().drop(1).fold(1) { a, b -> a * b }
    val numClasses: Int = inputTensor("train", "class_mask").shape()[0]
    val trainInputs: Set<String> = interpreter.getSignatureInputs("train").toSet()
    val replayDraws: Int =
        if ("replay_images" in trainInputs) inputTensor("train", "replay_images").shape()[0] else 0
    val replayBatchSize: Int =
        if (replayDraws > 0) inputTensor("train", "replay_images").shape()[1] else 0
    val hasGradientMasks: Boolean = "refresh_gradient_masks" in trainInputs
    val canUpdateMasks: Boolean = "update_masks" in interpreter.signatureKeys

    class StepResult(val loss: Float, val logits: FloatArray, val correct: FloatArray,
                     val gradientDensity: FloatArray)

    /** Logits [batchSize * numClasses] of one full batch of normalised images. */
    fun infer(images: FloatArray): FloatArray {
        val outputs = outputBuffers("infer")
        interpreter.runSignature(mapOf("images" to floats(images)), outputs, "infer")
        return outputs.getValue("logits").asFloats()
    }

    /**
     * One SparCL step. [replay] holds [replayDraws] draws from the app's buffer (null or empty
     * while the buffer is empty: replay_weight is then 0).
     */
    fun train(images: FloatArray, labels: IntArray, classMask: FloatArray,
              replay: List<ReservoirBuffer.Draw>?, refreshGradientMasks: Boolean): StepResult {
        val inputs = HashMap<String, Any>()
        inputs["images"] = floats(images)
        inputs["labels"] = ints(labels)
        inputs["class_mask"] = floats(classMask)
        if (replayDraws > 0) {
            val draws = replay.orEmpty()
            val size = replayBatchSize
            val replayImages = FloatArray(replayDraws * size * imageSize)
            val replayLabels = IntArray(replayDraws * size)
            val replayLogits = FloatArray(replayDraws * size * numClasses)
            draws.forEachIndexed { d, draw ->
                draw.images.copyInto(replayImages, d * size * imageSize)
                draw.labels.copyInto(replayLabels, d * size)
                draw.logits.copyInto(replayLogits, d * size * numClasses)
            }
            inputs["replay_images"] = floats(replayImages)
            inputs["replay_labels"] = ints(replayLabels)
            inputs["replay_logits"] = floats(replayLogits)
            inputs["replay_weight"] = floats(floatArrayOf(if (draws.isEmpty()) 0f else 1f))
        }
        if (hasGradientMasks) {
            inputs["refresh_gradient_masks"] =
                floats(floatArrayOf(if (refreshGradientMasks) 1f else 0f))
        }
        val outputs = outputBuffers("train")
        interpreter.runSignature(inputs, outputs, "train")
        return StepResult(
            outputs.getValue("loss").asFloats()[0], outputs.getValue("logits").asFloats(),
            outputs.getValue("correct").asFloats(), outputs.getValue("gradient_density").asFloats())
    }

    /** TDM prune-and-grow: active weights per sparse layer after pruning and after growing. */
    fun updateMasks(pruneTo: IntArray, growTo: IntArray, seed: Int): IntArray {
        check(canUpdateMasks) { "the model has no update_masks signature" }
        val outputs = outputBuffers("update_masks")
        interpreter.runSignature(
            mapOf("prune_to" to ints(pruneTo), "grow_to" to ints(growTo),
                  "seed" to ints(intArrayOf(seed))),
            outputs, "update_masks")
        val active = outputs.getValue("active")
        return IntArray(active.capacity() / 4) { active.getInt(it * 4) }
    }

    /**
     * Every variable (weights, BN statistics, masks, gradient masks, optimizer slots) to [file]:
     * per variable its name, byte count and raw bytes, written to a temporary file and renamed,
     * so an interrupted save leaves the previous state intact.
     */
    fun saveState(file: File) {
        val outputs = outputBuffers("get_state")
        // runSignature refuses an empty input map: get_state takes an ignored int32 scalar.
        interpreter.runSignature(mapOf<String, Any>("dummy" to 0), outputs, "get_state")
        val temporary = File(file.parentFile, file.name + ".tmp")
        DataOutputStream(FileOutputStream(temporary).buffered()).use { out ->
            out.writeInt(outputs.size)
            for ((name, buffer) in outputs.toSortedMap()) {
                out.writeUTF(name)
                out.writeInt(buffer.capacity())
                buffer.rewind()
                val bytes = ByteArray(buffer.capacity())
                buffer.get(bytes)
                out.write(bytes)
            }
        }
        if (!temporary.renameTo(file)) throw IOException("cannot replace $file")
    }

    /** Restores a [saveState] file; every variable must match the model's name and size. */
    fun restoreState(file: File) {
        val inputs = HashMap<String, Any>()
        DataInputStream(FileInputStream(file).buffered()).use { input ->
            repeat(input.readInt()) {
                val name = input.readUTF()
                val bytes = ByteArray(input.readInt())
                input.readFully(bytes)
                val expected = inputTensor("set_state", name).numBytes()
                require(bytes.size == expected) {
                    "state $name has ${bytes.size} bytes; the model needs $expected"
                }
                inputs[name] = ByteBuffer.allocateDirect(bytes.size).order(ByteOrder.nativeOrder())
                    .put(bytes).rewind()
            }
        }
        val missing = interpreter.getSignatureInputs("set_state").filterNot { it in inputs }
        require(missing.isEmpty()) { "state file $file lacks $missing" }
        interpreter.runSignature(inputs, outputBuffers("set_state"), "set_state")
    }

    override fun close() = interpreter.close()

    private fun inputTensor(signature: String, name: String) =
        interpreter.getInputTensorFromSignature(name, signature)

    private fun outputBuffers(signature: String): MutableMap<String, Any> =
        interpreter.getSignatureOutputs(signature).associateWith { name ->
            ByteBuffer.allocateDirect(interpreter.getOutputTensorFromSignature(name, signature)
                .numBytes()).order(ByteOrder.nativeOrder()) as Any
        }.toMutableMap()

    private fun Any.asFloats(): FloatArray {
        val buffer = (this as ByteBuffer).apply { rewind() }.asFloatBuffer()
        return FloatArray(buffer.remaining()).also { buffer.get(it) }
    }

    private fun floats(values: FloatArray): ByteBuffer =
        ByteBuffer.allocateDirect(values.size * 4).order(ByteOrder.nativeOrder()).apply {
            asFloatBuffer().put(values)
        }

    private fun ints(values: IntArray): ByteBuffer =
        ByteBuffer.allocateDirect(values.size * 4).order(ByteOrder.nativeOrder()).apply {
            asIntBuffer().put(values)
        }
}
