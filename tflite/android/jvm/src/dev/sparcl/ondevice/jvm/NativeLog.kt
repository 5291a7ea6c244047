package dev.sparcl.ondevice.jvm

import com.sun.jna.Library
import com.sun.jna.Native
import java.io.File

@Suppress("FunctionName")
private interface LibC : Library {
    fun open(path: String, flags: Int, mode: Int): Int
    fun dup(fd: Int): Int
    fun dup2(from: Int, to: Int): Int
    fun close(fd: Int): Int
}

/**
 * Sends what native code writes to stderr during [block] (LiteRT's INFO lines and its own error
 * messages) to [log] instead, or nowhere when [log] cannot be opened, so the binary's stderr
 * carries one line only: its own.
 */
class NativeLog(private val log: File) {
    val path: String get() = log.path

    private val libc: LibC = Native.load("c", LibC::class.java)

    fun <T> quiet(block: () -> T): T {
        log.absoluteFile.parentFile.mkdirs()
        val target = libc.open(log.absolutePath, O_WRONLY or O_CREAT or O_APPEND, 420).takeIf { it >= 0 }  // 0644
            ?: libc.open("/dev/null", O_WRONLY, 0)
        if (target < 0) return block()
        System.err.flush()
        val saved = libc.dup(STDERR)
        libc.dup2(target, STDERR)
        libc.close(target)
        try {
            return block()
        } finally {
            libc.dup2(saved, STDERR)
            libc.close(saved)
        }
    }

    private companion object {
        const val STDERR = 2
        const val O_WRONLY = 1
        const val O_CREAT = 64
        const val O_APPEND = 1024
    }
}
