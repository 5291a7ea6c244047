package dev.sparcl.ondevice.jvm

import dev.sparcl.ondevice.PlanEvent
import dev.sparcl.ondevice.SessionPlan
import java.io.File
import kotlin.system.exitProcess
import org.json.JSONArray
import org.json.JSONObject

/**
 * Checks [SessionPlan.taskEvents] against the golden vectors Python's planner wrote
 * (tools/policy_golden.py -> tflite/session_golden.json): every case's plan parsed as an app
 * parses it, every (task, examples) pair's events compared field by field. Prints one line;
 * exit 0 when all agree, 1 at the first difference.
 */
fun main(args: Array<String>) {
    val file = File(args.singleOrNull() ?: run { System.err.println("usage: GoldenCheck FILE"); exitProcess(2) })
    val cases = JSONObject(file.readText()).getJSONArray("cases")
    var compared = 0
    for (c in 0 until cases.length()) {
        val case = cases.getJSONObject(c)
        val plan = SessionPlan.parse(case.getJSONObject("plan"))
        val tasks = case.getJSONArray("tasks")
        for (t in 0 until tasks.length()) {
            val entry = tasks.getJSONObject(t)
            val expected = entry.getJSONArray("events")
            val got = plan.taskEvents(entry.getInt("task"), entry.getInt("examples"))
            val where = "${case.getString("name")} task ${entry.getInt("task")} examples ${entry.getInt("examples")}"
            if (got.size != expected.length()) fail("$where: ${got.size} events, golden ${expected.length()}")
            for ((i, event) in got.withIndex()) {
                val mine = text(json(event))
                val theirs = text(expected.getJSONObject(i))
                if (mine != theirs) fail("$where event $i: $mine, golden $theirs")
                compared++
            }
        }
    }
    println("golden: ${cases.length()} cases, $compared events equal")
}

private fun fail(message: String): Nothing {
    System.err.println("golden: $message")
    exitProcess(1)
}

private val FIELDS = listOf("epoch", "numerator", "denominator", "update_index", "mask_update", "seed",
    "prune_to", "grow_to", "removal_stage", "removal_target")

/** The event's fields in one order (org.json keeps no order and has no deep equality on Android). */
private fun text(event: JSONObject) = FIELDS.joinToString(" ") { "$it=${event.get(it)}" }

private fun json(e: PlanEvent) = JSONObject()
    .put("epoch", e.epoch).put("numerator", e.numerator).put("denominator", e.denominator)
    .put("update_index", e.updateIndex).put("mask_update", e.maskUpdate).put("seed", e.seed)
    .put("prune_to", JSONArray(e.pruneTo.toList())).put("grow_to", JSONArray(e.growTo.toList()))
    .put("removal_stage", e.removalStage).put("removal_target", e.removalTarget)
