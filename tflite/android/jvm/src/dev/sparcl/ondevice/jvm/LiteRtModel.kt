package dev.sparcl.ondevice.jvm

import com.sun.jna.Library
import com.sun.jna.Memory
import com.sun.jna.Native
import com.sun.jna.Pointer
import com.sun.jna.ptr.LongByReference
import com.sun.jna.ptr.PointerByReference
import dev.sparcl.ondevice.ElementType
import dev.sparcl.ondevice.JavaApiRules
import dev.sparcl.ondevice.ModelFile
import dev.sparcl.ondevice.SessionError
import dev.sparcl.ondevice.Signature
import dev.sparcl.ondevice.TensorSpec
import dev.sparcl.ondevice.TrainingModel
import dev.sparcl.ondevice.directBuffer
import java.io.File
import java.nio.ByteBuffer

/** The calls of LiteRT's C API (litert/c, the 2.x ABI that ai-edge-litert 2.3 ships) this adapter makes. */
@Suppress("FunctionName")
interface LiteRtC : Library {
    fun LiteRtCreateEnvironment(numOptions: Int, options: Pointer?, environment: PointerByReference): Int
    fun LiteRtDestroyEnvironment(environment: Pointer)
    fun LiteRtCreateModelFromFile(environment: Pointer, path: String, model: PointerByReference): Int
    fun LiteRtDestroyModel(model: Pointer)
    fun LiteRtGetNumModelSignatures(model: Pointer, count: LongByReference): Int
    fun LiteRtGetModelSignature(model: Pointer, index: Long, signature: PointerByReference): Int
    fun LiteRtGetSignatureKey(signature: Pointer, key: PointerByReference): Int
    fun LiteRtGetNumSignatureInputs(signature: Pointer, count: LongByReference): Int
    fun LiteRtGetNumSignatureOutputs(signature: Pointer, count: LongByReference): Int
    fun LiteRtGetSignatureInputName(signature: Pointer, index: Long, name: PointerByReference): Int
    fun LiteRtGetSignatureOutputName(signature: Pointer, index: Long, name: PointerByReference): Int
    fun LiteRtGetSignatureInputTensorByIndex(signature: Pointer, index: Long, tensor: PointerByReference): Int
    fun LiteRtGetSignatureOutputTensorByIndex(signature: Pointer, index: Long, tensor: PointerByReference): Int
    fun LiteRtGetRankedTensorType(tensor: Pointer, type: Pointer): Int
    fun LiteRtCreateOptions(options: PointerByReference): Int
    fun LiteRtSetOptionsHardwareAccelerators(options: Pointer, accelerators: Int): Int
    fun LiteRtDestroyOptions(options: Pointer)
    fun LiteRtCreateCompiledModel(environment: Pointer, model: Pointer, options: Pointer, compiled: PointerByReference): Int
    fun LiteRtDestroyCompiledModel(compiled: Pointer)
    fun LiteRtGetCompiledModelInputBufferRequirements(compiled: Pointer, signature: Long, input: Long, requirements: PointerByReference): Int
    fun LiteRtGetCompiledModelOutputBufferRequirements(compiled: Pointer, signature: Long, output: Long, requirements: PointerByReference): Int
    fun LiteRtCreateManagedTensorBufferFromRequirements(environment: Pointer, type: Pointer, requirements: Pointer, buffer: PointerByReference): Int
    fun LiteRtDestroyTensorBuffer(buffer: Pointer)
    fun LiteRtGetTensorBufferPackedSize(buffer: Pointer, size: LongByReference): Int
    fun LiteRtLockTensorBuffer(buffer: Pointer, address: PointerByReference, mode: Int): Int
    fun LiteRtUnlockTensorBuffer(buffer: Pointer): Int
    fun LiteRtRunCompiledModel(compiled: Pointer, signature: Long, numInputs: Long, inputs: Array<Pointer>, numOutputs: Long, outputs: Array<Pointer>): Int
}

/**
 * The desktop adapter: a [TrainingModel] over `libLiteRt.so` through JNA. One compiled model on
 * the CPU holds the variables, shared by every signature, as the Android interpreter does; each
 * signature's tensor buffers are made once and reused. It applies [JavaApiRules], so what the
 * phone's `runSignature` would refuse fails here too. Not thread-safe, like the interpreter.
 */
class LiteRtModel(library: File, modelFile: File, private val nativeLog: NativeLog, sha256: String? = null) : TrainingModel {
    private val environment: Pointer
    private val model: Pointer
    private val compiled: Pointer
    private val options: Pointer
    private val index = LinkedHashMap<String, Int>()
    private val inputBuffers = HashMap<String, List<Pair<String, Pointer>>>()
    private val outputBuffers = HashMap<String, List<Pair<String, Pointer>>>()
    private val inputHandles = HashMap<String, Array<Pointer>>()  // what RunCompiledModel takes, made once
    private val outputHandles = HashMap<String, Array<Pointer>>()
    override val signatures: Map<String, Signature>

    private fun check(status: Int, what: String) {
        if (status != 0) throw SessionError("LiteRT $what failed (status $status; LiteRT's messages are in ${nativeLog.path})")
    }
    private fun out(call: (PointerByReference) -> Int, what: String): Pointer =
        PointerByReference().also { check(call(it), what) }.value ?: throw SessionError("LiteRT $what returned null")
    private fun count(call: (LongByReference) -> Int, what: String): Int = LongByReference().also { check(call(it), what) }.value.toInt()

    private val c: LiteRtC

    init {
        if (!modelFile.isFile) throw SessionError("model file $modelFile does not exist")
        val bytes = try { modelFile.readBytes() } catch (error: java.io.IOException) { throw SessionError("cannot read model $modelFile: ${error.message}") }
        ModelFile.verify(java.nio.ByteBuffer.wrap(bytes), sha256, modelFile.toString())
        c = runtime(library)
        nativeLog.quiet { }  // fails early when the log cannot be redirected
        environment = nativeLog.quiet { out({ c.LiteRtCreateEnvironment(0, null, it) }, "CreateEnvironment") }
        model = nativeLog.quiet { out({ c.LiteRtCreateModelFromFile(environment, modelFile.absolutePath, it) }, "CreateModelFromFile($modelFile)") }
        val described = LinkedHashMap<String, Signature>()
        val types = HashMap<String, List<Memory>>()
        for (s in 0 until count({ c.LiteRtGetNumModelSignatures(model, it) }, "GetNumModelSignatures")) {
            val signature = out({ c.LiteRtGetModelSignature(model, s.toLong(), it) }, "GetModelSignature")
            val key = out({ c.LiteRtGetSignatureKey(signature, it) }, "GetSignatureKey").getString(0)
            fun tensors(input: Boolean): List<Triple<String, TensorSpec, Memory>> {
                val n = count({ if (input) c.LiteRtGetNumSignatureInputs(signature, it) else c.LiteRtGetNumSignatureOutputs(signature, it) }, "GetNumSignature")
                return List(n) { i ->
                    val name = out({ if (input) c.LiteRtGetSignatureInputName(signature, i.toLong(), it)
                                     else c.LiteRtGetSignatureOutputName(signature, i.toLong(), it) }, "GetSignatureName").getString(0)
                    val tensor = out({ if (input) c.LiteRtGetSignatureInputTensorByIndex(signature, i.toLong(), it)
                                       else c.LiteRtGetSignatureOutputTensorByIndex(signature, i.toLong(), it) }, "GetSignatureTensor")
                    val type = Memory(TENSOR_TYPE_BYTES).also { it.clear() }
                    check(c.LiteRtGetRankedTensorType(tensor, type), "GetRankedTensorType($key/$name)")
                    Triple(name, spec(type, "$key/$name"), type)
                }
            }
            val inputs = tensors(true)
            val outputs = tensors(false)
            index[key] = s
            described[key] = Signature(inputs.associate { it.first to it.second }, outputs.associate { it.first to it.second })
                .also { JavaApiRules.checkSignature(key, it) }
            types["$key/in"] = inputs.map { it.third }
            types["$key/out"] = outputs.map { it.third }
            inputBuffers[key] = inputs.map { it.first to Pointer.NULL }
            outputBuffers[key] = outputs.map { it.first to Pointer.NULL }
        }
        signatures = described
        options = out({ c.LiteRtCreateOptions(it) }, "CreateOptions")
        check(c.LiteRtSetOptionsHardwareAccelerators(options, CPU), "SetOptionsHardwareAccelerators")
        compiled = nativeLog.quiet { out({ c.LiteRtCreateCompiledModel(environment, model, options, it) }, "CreateCompiledModel($modelFile)") }
        for ((key, s) in index) {
            inputBuffers[key] = inputBuffers.getValue(key).mapIndexed { i, (name, _) ->
                name to buffer(types.getValue("$key/in")[i], out({ c.LiteRtGetCompiledModelInputBufferRequirements(compiled, s.toLong(), i.toLong(), it) }, "input requirements"))
            }
            outputBuffers[key] = outputBuffers.getValue(key).mapIndexed { i, (name, _) ->
                name to buffer(types.getValue("$key/out")[i], out({ c.LiteRtGetCompiledModelOutputBufferRequirements(compiled, s.toLong(), i.toLong(), it) }, "output requirements"))
            }
            inputHandles[key] = inputBuffers.getValue(key).map { it.second }.toTypedArray()
            outputHandles[key] = outputBuffers.getValue(key).map { it.second }.toTypedArray()
        }
    }

    private fun buffer(type: Memory, requirements: Pointer) =
        out({ c.LiteRtCreateManagedTensorBufferFromRequirements(environment, type, requirements, it) }, "CreateManagedTensorBuffer")

    private fun spec(type: Memory, what: String): TensorSpec {
        val element = when (val code = type.getInt(0)) {
            1 -> ElementType.FLOAT32; 2 -> ElementType.INT32; 3 -> ElementType.UINT8; 4 -> ElementType.INT64
            6 -> ElementType.BOOL; 7 -> ElementType.INT16; 9 -> ElementType.INT8
            else -> throw SessionError("tensor $what has element type $code, which LiteRT's Java API cannot exchange")
        }
        val rank = type.getInt(4) and 0x7F  // LiteRtLayout: rank:7 and has_strides:1 bits, then int32 dims[8]
        return TensorSpec(IntArray(rank) { type.getInt(8L + 4 * it) }, element)
    }

    private fun <T> locked(buffer: Pointer, mode: Int, size: Int, use: (ByteBuffer) -> T): T {
        val address = out({ c.LiteRtLockTensorBuffer(buffer, it, mode) }, "LockTensorBuffer")
        try { return use(address.getByteBuffer(0, size.toLong())) } finally { check(c.LiteRtUnlockTensorBuffer(buffer), "UnlockTensorBuffer") }
    }

    override fun run(key: String, inputs: Map<String, ByteBuffer>): Map<String, ByteBuffer> {
        val signature = signatures[key] ?: throw SessionError("the model has no signature '$key'")
        JavaApiRules.checkInputs(key, signature, inputs)
        val ins = inputBuffers.getValue(key)
        val outs = outputBuffers.getValue(key)
        for ((name, buffer) in ins) {
            val source = inputs.getValue(name).duplicate().also { it.rewind() }
            locked(buffer, WRITE, source.capacity()) { it.put(source) }
        }
        val status = nativeLog.quiet {  // LiteRT logs as it first runs some signatures
            c.LiteRtRunCompiledModel(compiled, index.getValue(key).toLong(), ins.size.toLong(), inputHandles.getValue(key),
                outs.size.toLong(), outputHandles.getValue(key))
        }
        check(status, "RunCompiledModel($key)")
        return outs.associate { (name, buffer) ->
            val bytes = signature.outputs.getValue(name).bytes
            name to directBuffer(bytes).also { target -> locked(buffer, READ, bytes) { target.put(it) }; target.rewind() }
        }
    }

    override fun close() = nativeLog.quiet {
        (inputBuffers.values + outputBuffers.values).flatten().forEach { c.LiteRtDestroyTensorBuffer(it.second) }
        c.LiteRtDestroyCompiledModel(compiled)
        c.LiteRtDestroyOptions(options)
        c.LiteRtDestroyModel(model)
        c.LiteRtDestroyEnvironment(environment)
    }

    private companion object {
        /** Each runtime loaded once and kept for the life of the process: JNA unloads a library whose
         *  proxy is collected, and an unloaded libLiteRt.so leaves exit handlers that crash the JVM
         *  as it exits (seen when one JVM opened several models). */
        private val runtimes = HashMap<String, LiteRtC>()

        @Synchronized
        fun runtime(library: File): LiteRtC = runtimes.getOrPut(library.absolutePath) {
            try { Native.load(library.absolutePath, LiteRtC::class.java) } catch (error: UnsatisfiedLinkError) {
                throw SessionError("cannot load the LiteRT runtime $library: ${error.message?.lineSequence()?.first()}")
            }
        }

        const val TENSOR_TYPE_BYTES = 256L  // > sizeof(LiteRtRankedTensorType) (72 bytes in 2.x)
        const val CPU = 1
        const val READ = 0
        const val WRITE = 1
    }
}
