package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.DeviceLearner
import dev.sparcl.ondevice.SessionError
import dev.sparcl.ondevice.SessionPlan
import dev.sparcl.ondevice.TaskCancelled
import java.io.File
import java.io.PrintStream
import kotlin.system.exitProcess

private const val USAGE = """usage: app_example.sh --model=W/model.tflite --data=TASK_FOLDER|TASKS.npz --state_dir=DIR
    [--litert=.../libLiteRt.so] [--checkpoint_every=STEPS] [--trace=FILE] [--cancel_after_step=N] [--halt_after_step=N]

Plays an app that learns on the phone: the tasks arrive one at a time (as a user's photos would,
weeks apart) from TASK_FOLDER (task_1, task_2, ... each with train/<class>/*.png and optionally
test/<class>/*.png; `python -m tools.task_images` makes one) or a task-data file; one task's
images are read when it arrives. Before each new task the app shows what the model predicts for its
first images, then the learner learns it. --cancel_after_step=N cancels the running task after
global step N as a stopped WorkManager worker would (its state is saved, exit 3); --halt_after_step=N
kills the process there. Running again goes on where it stopped. Writes DIR/results.json."""

/** The app's flags (the bad-input table holds a row for each). */
val APP_FLAGS = setOf("model", "data", "state_dir", "litert", "checkpoint_every", "trace", "cancel_after_step", "halt_after_step")

fun main(args: Array<String>) {
    exitProcess(runApp(args, System.err))
}

/** The app: [DeviceLearner] over the model, fed one task at a time. Returns the exit code (0
 * done, 3 cancelled, 2 bad input, 1 unforeseen); the one error line goes to [errors]. */
fun runApp(args: Array<String>, errors: PrintStream): Int {
    if (args.contains("--help")) { println(USAGE); return 0 }
    try {
        val given = args.associate { arg ->
            val match = Regex("--([a-z_]+)=(.*)").matchEntire(arg) ?: throw SessionError("unknown argument '$arg'")
            match.groupValues[1] to match.groupValues[2]
        }
        val unknown = given.keys - APP_FLAGS
        if (unknown.isNotEmpty()) throw SessionError("unknown flags ${unknown.sorted()}; see --help")
        fun need(name: String) = given[name] ?: throw SessionError("--$name is required\n$USAGE")
        fun step(name: String) = given[name]?.let { it.toLongOrNull()?.takeIf { step -> step >= 0 } ?: throw SessionError("--$name must be an integer >= 0, got '$it'") }
        val modelFile = File(need("model"))
        val signatures = File(modelFile.absoluteFile.parentFile, "signatures.json")
        if (!signatures.isFile) throw SessionError("no signatures.json beside $modelFile: export the model with tools.convert or ContinualLearner.export")
        val plan = SessionPlan.fromSignaturesJson(signatures.readText())
        val library = File(given["litert"] ?: System.getenv("LITERT_LIBRARY") ?: throw SessionError("--litert is required"))
        val arriving = openTaskStream(File(need("data")), plan)  // stands in for the app's own store
        val stateDir = File(need("state_dir"))
        if (stateDir.isFile) throw SessionError("--state_dir $stateDir cannot be used: it is a file, not a folder")
        val cancelAfter = step("cancel_after_step")
        val checkpointEvery = step("checkpoint_every")?.coerceAtMost(Int.MAX_VALUE.toLong())?.toInt() ?: 0
        val haltAfter = step("halt_after_step")
        val trace = given["trace"]?.let { TraceFile(it, append = true) }
        var lastStep = -1L
        LiteRtModel(library, modelFile, NativeLog(File(stateDir.absoluteFile.parentFile, "litert-${stateDir.name}.log")), plan.modelSha256).use { runtime ->
            DeviceLearner(runtime, plan, stateDir, checkpointEvery) { record ->
                trace?.write(record)
                if (record.getString("kind") == "step") lastStep = record.getLong("step")
                if (haltAfter != null && lastStep >= haltAfter) Runtime.getRuntime().halt(137)
            }.use { learner ->
                for (task in learner.nextTask until arriving.numTasks) {
                    val data = arriving.training(task)
                    val peek = learner.predict(arriving.test(task).images)
                    val guess = if (peek.isEmpty()) "-" else (0 until learner.numClasses).maxByOrNull { peek[it] }.toString()
                    println("task ${task + 1} arrives (${data.labels.size} examples); the model now says class $guess for its first test image")
                    val results = learner.fitTask(data.images, data.labels, arriving.classes(task), arriving.test(task).takeIf { it.labels.isNotEmpty() },
                        cancelled = { cancelAfter != null && lastStep >= cancelAfter })
                    println("task ${task + 1} learned: class-IL ${results.get("class_il")}")
                }
                val target = File(stateDir, "results.json")
                File(stateDir, "results.json.tmp").apply { writeText(learner.results().toString(2)) }.renameTo(target)
                println("results: $target")
            }
        }
        trace?.close()
        return 0
    } catch (cancelled: TaskCancelled) {
        println("cancelled: ${cancelled.message}")
        return 3
    } catch (error: SessionError) {
        errors.println("error: ${error.message?.lineSequence()?.first()}")
        return 2
    } catch (error: Exception) {
        errors.println("error: ${error::class.simpleName}: ${error.message}")
        return 1
    }
}
