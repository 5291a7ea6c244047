package dev.sparcl.ondevice.jvm

import org.json.JSONArray
import org.json.JSONObject
import java.io.ByteArrayOutputStream
import java.io.File
import java.io.PrintStream
import java.security.MessageDigest

private fun snapshot(root: File): Map<String, String> = root.walk().associate { file ->
    file.path to if (file.isDirectory) "folder" else MessageDigest.getInstance("SHA-256").digest(file.readBytes()).joinToString("") { "%02x".format(it) }
}

/**
 * Runs bad-input rows through one host inside this one JVM (tests/test_bad_input_table.py; a JVM
 * per row would pay its start and LiteRT's load each time): `Rows session|app ROWS.json SANDBOX`,
 * ROWS a JSON array of argument arrays. Prints the host's flag names, then one JSON line per row:
 * the exit code, what the host wrote to its error stream, and every path under SANDBOX the row
 * created, removed or changed. A row that escapes the host's own handling (an Error, a crash of
 * the runtime) shows as code -1 with what was thrown.
 */
fun main(args: Array<String>) {
    val (host, flags) = when (args[0]) {
        "session" -> Pair(::runSession, SESSION_FLAGS)
        "app" -> Pair(::runApp, APP_FLAGS)
        else -> throw IllegalArgumentException("host must be session or app, got ${args[0]}")
    }
    val out = System.out
    out.println(JSONArray(flags.sorted()))
    val rows = JSONArray(File(args[1]).readText())
    for (index in 0 until rows.length()) {
        val row = rows.getJSONArray(index).let { given -> Array(given.length()) { given.getString(it) } }
        val errors = ByteArrayOutputStream()
        val before = snapshot(File(args[2]))
        System.setOut(PrintStream(ByteArrayOutputStream()))  // a row's progress lines
        val code = try {
            host(row, PrintStream(errors, true))
        } catch (thrown: Throwable) {
            PrintStream(errors, true).println("thrown: $thrown")
            -1
        } finally {
            System.setOut(out)
        }
        val after = snapshot(File(args[2]))
        val changed = (before.keys + after.keys).filter { before[it] != after[it] }.sorted()
        out.println(JSONObject().put("code", code).put("stderr", errors.toString()).put("changed", JSONArray(changed)))
    }
}
