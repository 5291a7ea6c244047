#!/usr/bin/env bash
# Runs the Kotlin session on the desktop LiteRT runtime (build it first with ./build.sh); flags:
# ./session.sh --help (SPARCL_MAIN names another main class: app_example.sh). Finds libLiteRt.so in the project's .venv unless --litert or LITERT_LIBRARY says.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${LITERT_LIBRARY:-}" ]; then
  LITERT_LIBRARY="$(ls "$HERE"/../../.venv/lib/python3*/site-packages/ai_edge_litert/libLiteRt.so 2>/dev/null | head -1)"
  export LITERT_LIBRARY
fi
exec java -Xss4m -cp "$HERE/build/sparcl-session.jar:/usr/share/java/jna.jar:/usr/share/java/com.android.json.jar" \
  "${SPARCL_MAIN:-dev.sparcl.ondevice.jvm.MainKt}" "$@"
