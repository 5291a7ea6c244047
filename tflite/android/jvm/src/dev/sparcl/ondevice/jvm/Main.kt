package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.ContinualSession
import dev.sparcl.ondevice.SessionError
import dev.sparcl.ondevice.SessionPlan
import dev.sparcl.ondevice.SparclModel
import java.io.File
import java.io.PrintStream
import kotlin.system.exitProcess

private const val USAGE = """usage: sparcl-session --model=W/model.tflite --data=W/task_data.npz|TASK_FOLDER --state_dir=DIR
    [--litert=.../ai_edge_litert/libLiteRt.so] [--checkpoint_every=STEPS] [--trace=FILE] [--halt_after_step=N]

Runs a whole continual-learning session through the training .tflite on the LiteRT runtime, as the
Android app does (the same Kotlin session): follows the session plan in signatures.json beside the
model, keeps state files in DIR (running again resumes), writes DIR/results.json. --data is a
task-data file or a folder of task_1, task_2, ... with train/<class>/*.png. --trace writes
every step, mask update, removal and task end as JSON lines; --halt_after_step=N stops the process
abruptly after global step N (a kill, for resume tests). LiteRT's own messages go to DIR/litert.log."""

/** The session host's flags (the bad-input table holds a row for each). */
val SESSION_FLAGS = setOf("model", "data", "state_dir", "litert", "checkpoint_every", "trace", "halt_after_step")

private fun flags(args: Array<String>): Map<String, String> = args.associate { arg ->
    val match = Regex("--([a-z_]+)=(.*)").matchEntire(arg) ?: throw SessionError("unknown argument '$arg'\n$USAGE")
    match.groupValues[1] to match.groupValues[2]
}.also { given ->
    val unknown = given.keys - SESSION_FLAGS
    if (unknown.isNotEmpty()) throw SessionError("unknown flags ${unknown.sorted()}\n$USAGE")
}

private fun intFlag(flags: Map<String, String>, name: String, default: Int): Int =
    flags[name]?.let { it.toIntOrNull()?.takeIf { value -> value >= 0 } ?: throw SessionError("--$name must be an integer >= 0, got '$it'") } ?: default

fun main(args: Array<String>) {
    exitProcess(runSession(args, System.err))
}

/** The host run on [args]: its exit code (0 done, 2 bad input, 1 unforeseen); the one error line
 * goes to [errors]. */
fun runSession(args: Array<String>, errors: PrintStream): Int {
    if (args.contains("--help")) { println(USAGE); return 0 }
    try {
        val given = flags(args)
        fun need(name: String) = given[name] ?: throw SessionError("--$name is required\n$USAGE")
        val modelFile = File(need("model"))
        val stateDir = File(need("state_dir"))
        if (stateDir.isFile) throw SessionError("--state_dir $stateDir cannot be used: it is a file, not a folder")
        val signaturesFile = File(modelFile.absoluteFile.parentFile, "signatures.json")
        if (!signaturesFile.isFile) throw SessionError("no signatures.json beside $modelFile: convert the run with tools.convert")
        val plan = SessionPlan.fromSignaturesJson(signaturesFile.readText())
        val library = File(given["litert"] ?: System.getenv("LITERT_LIBRARY") ?: throw SessionError("--litert (path of libLiteRt.so) is required"))
        val haltAfter = given["halt_after_step"]?.let { intFlag(given, "halt_after_step", 0).toLong() }
        val checkpointEvery = intFlag(given, "checkpoint_every", 0)
        val stream = openTaskStream(File(need("data")), plan)
        val trace = given["trace"]?.let { TraceFile(it, append = false) }
        LiteRtModel(library, modelFile, NativeLog(File(stateDir, "litert.log")), plan.modelSha256).use { runtime ->
            val session = ContinualSession(SparclModel(runtime, plan), plan, stream, stateDir, checkpointEvery) { record ->
                trace?.write(record)
                if (record.getString("kind") == "step" && haltAfter != null && record.getLong("step") >= haltAfter)
                    Runtime.getRuntime().halt(137)
                if (record.getString("kind") == "task_end")
                    println("task ${record.getInt("task") + 1}/${stream.numTasks}: class-IL ${record.getJSONArray("class_il")}")
            }
            val results = session.run()
            val target = File(stateDir, "results.json")
            val temporary = File(stateDir, "results.json.tmp")
            temporary.writeText(results.toString(2))
            if (!temporary.renameTo(target)) throw SessionError("cannot write $target")
            println("results: $target")
        }
        trace?.close()
        return 0
    } catch (error: SessionError) {
        errors.println("error: ${error.message?.lineSequence()?.first()}")
        return 2
    } catch (error: Exception) {
        errors.println("error: ${error::class.simpleName}: ${error.message}")
        return 1
    }
}
