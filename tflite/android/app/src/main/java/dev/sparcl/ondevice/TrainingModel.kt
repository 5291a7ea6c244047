package dev.sparcl.ondevice

import java.nio.ByteBuffer
import java.nio.ByteOrder

/** One clear line for everything a session refuses: a bad plan, model, data set or state file. */
open class SessionError(message: String) : Exception(message)

/** A task stopped by its cancellation hook between two steps, its state saved: the next
 *  `fitTask` (or `run`) with the same task goes on from there. */
class TaskCancelled(message: String) : SessionError(message)

/** Element types LiteRT's Java API can exchange (its DataType), with their byte widths. */
enum class ElementType(val bytes: Int) { FLOAT32(4), INT32(4), INT64(8), UINT8(1), INT8(1), INT16(2), BOOL(1) }

/** A signature tensor's static [shape] and element [type]. */
class TensorSpec(val shape: IntArray, val type: ElementType) {
    val elements: Int get() = shape.fold(1) { product, dimension -> product * dimension }
    val bytes: Int get() = elements * type.bytes
    override fun toString() = "${type.name.lowercase()}${shape.contentToString()}"
}

/** A signature's inputs and outputs, by name. */
class Signature(val inputs: Map<String, TensorSpec>, val outputs: Map<String, TensorSpec>)

/**
 * All the session needs from a runtime: the model's signatures, and a run of one of them on named
 * buffers. Adapters: `InterpreterModel` (Android, `org.tensorflow.lite.Interpreter`) and, on a
 * desktop JVM, `LiteRtModel` (`libLiteRt.so`'s C API). Both apply [JavaApiRules].
 */
interface TrainingModel : AutoCloseable {
    val signatures: Map<String, Signature>

    /** Runs signature [key]; [inputs] holds one direct native-order buffer of exactly the right
     *  size per input. Returns one such buffer per output, positioned at 0. */
    fun run(key: String, inputs: Map<String, ByteBuffer>): Map<String, ByteBuffer>
}

/** A direct buffer of [bytes] bytes in the platform's byte order, as the runtime's inputs must be. */
fun directBuffer(bytes: Int): ByteBuffer = ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder())

/**
 * What `Interpreter.runSignature` refuses on a phone, refused on every runtime, so a desktop run
 * fails where the app would: a signature without inputs or outputs ("Input error: Inputs should
 * not be null or empty."), dynamic shapes, and buffers that are not exactly the tensor's bytes.
 */
object JavaApiRules {
    /** A [SessionError] when signature [key] has no inputs or outputs, or a tensor of dynamic shape. */
    fun checkSignature(key: String, signature: Signature) {
        if (signature.inputs.isEmpty() || signature.outputs.isEmpty())
            throw SessionError("signature '$key' has no ${if (signature.inputs.isEmpty()) "inputs" else "outputs"}: " +
                "LiteRT's Java runSignature refuses empty input and output maps; convert the model again")
        for ((name, spec) in signature.inputs + signature.outputs)
            if (spec.shape.any { it < 0 })
                throw SessionError("signature '$key' tensor '$name' has a dynamic shape ${spec.shape.contentToString()}")
    }

    /** A [SessionError] when [inputs] for signature [key] are empty, do not match its inputs, or are not direct native-order buffers of the right size. */
    fun checkInputs(key: String, signature: Signature, inputs: Map<String, ByteBuffer>) {
        if (inputs.isEmpty()) throw SessionError("'$key': Input error: Inputs should not be null or empty.")
        val unknown = inputs.keys - signature.inputs.keys
        val missing = signature.inputs.keys - inputs.keys
        if (unknown.isNotEmpty() || missing.isNotEmpty())
            throw SessionError("'$key' inputs do not match the signature: unknown ${unknown.sorted()}, missing ${missing.sorted()}")
        for ((name, buffer) in inputs) {
            val spec = signature.inputs.getValue(name)
            if (!buffer.isDirect || buffer.order() != ByteOrder.nativeOrder() || buffer.capacity() != spec.bytes)
                throw SessionError("'$key' input '$name' needs a direct native-order buffer of ${spec.bytes} bytes " +
                    "($spec), got ${buffer.capacity()} bytes")
        }
    }
}
