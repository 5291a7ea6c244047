package dev.sparcl.ondevice

import java.io.File
import java.nio.ByteBuffer
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter

/**
 * The Android adapter: a [TrainingModel] over LiteRT's `org.tensorflow.lite.Interpreter` (Gradle:
 * `com.google.ai.edge.litert:litert`), from a model `File` or a `ByteBuffer` (an asset mapped with
 * `assets.openFd(...)`, or the file's bytes in a direct buffer). One interpreter holds the model's
 * variables, shared by all its signatures; it is not thread-safe, so one thread drives a session.
 * The Java API's own exceptions (`IllegalArgumentException`, `IllegalStateException`) come out as
 * [SessionError].
 */
class InterpreterModel private constructor(private val interpreter: Interpreter) : TrainingModel {
    /** The model in [modelFile], checked first ([ModelFile.verify]; [sha256]: the plan's `modelSha256`). */
    constructor(modelFile: File, sha256: String?, threads: Int = 2) :
        this(modelBuffer(modelFile), sha256, threads)
    /** The model in [model] (an asset mapped with `assets.openFd(...)`, or direct bytes), checked first. */
    constructor(model: ByteBuffer, sha256: String?, threads: Int = 2) :
        this(javaApi("load the model") {
            ModelFile.verify(model, sha256, "the model")
            Interpreter(model, Interpreter.Options().setNumThreads(threads))
        })

    override val signatures: Map<String, Signature> = javaApi("read the signatures") {
        interpreter.signatureKeys.associateWith { key ->
            Signature(
                interpreter.getSignatureInputs(key).associateWith { spec(interpreter.getInputTensorFromSignature(it, key)) },
                interpreter.getSignatureOutputs(key).associateWith { spec(interpreter.getOutputTensorFromSignature(it, key)) },
            ).also { JavaApiRules.checkSignature(key, it) }
        }
    }

    override fun run(key: String, inputs: Map<String, ByteBuffer>): Map<String, ByteBuffer> {
        val signature = signatures[key] ?: throw SessionError("the model has no signature '$key'")
        JavaApiRules.checkInputs(key, signature, inputs)
        inputs.values.forEach { it.rewind() }
        val outputs = signature.outputs.mapValues { (_, spec) -> directBuffer(spec.bytes) }
        javaApi("run '$key'") { interpreter.runSignature(inputs, outputs, key) }
        outputs.values.forEach { it.rewind() }
        return outputs
    }

    override fun close() = interpreter.close()

    private companion object {
        fun modelBuffer(file: File): ByteBuffer = try {
            java.io.RandomAccessFile(file, "r").use { it.channel.map(java.nio.channels.FileChannel.MapMode.READ_ONLY, 0, it.length()) }
        } catch (error: java.io.IOException) {
            throw SessionError("cannot read model $file: ${error.message}")
        }

        /** [call], with the Java API's exceptions as one-line [SessionError]s naming [what] it did. */
        fun <T> javaApi(what: String, call: () -> T): T = try { call() } catch (error: IllegalArgumentException) {
            throw SessionError("LiteRT cannot $what: ${error.message?.lineSequence()?.first()}")
        } catch (error: IllegalStateException) {
            throw SessionError("LiteRT cannot $what: ${error.message?.lineSequence()?.first()}")
        }
    }

    private fun spec(tensor: org.tensorflow.lite.Tensor): TensorSpec {
        val type = when (tensor.dataType()) {
            DataType.FLOAT32 -> ElementType.FLOAT32
            DataType.INT32 -> ElementType.INT32
            DataType.INT64 -> ElementType.INT64
            DataType.UINT8 -> ElementType.UINT8
            DataType.INT8 -> ElementType.INT8
            DataType.INT16 -> ElementType.INT16
            DataType.BOOL -> ElementType.BOOL
            else -> throw SessionError("tensor ${tensor.name()} has type ${tensor.dataType()}, which a session cannot exchange")
        }
        // shape() reports 1 for a dynamic dimension; only shapeSignature() shows it as -1.
        return TensorSpec(tensor.shapeSignature(), type)
    }
}
