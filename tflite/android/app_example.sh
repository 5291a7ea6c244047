#!/usr/bin/env bash
# Runs the app-shaped example (jvm/src/.../AppExample.kt: a DeviceLearner fed one task at a time)
# on the desktop LiteRT runtime; build it first with ./build.sh. Flags: ./app_example.sh --help.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${LITERT_LIBRARY:-}" ]; then
  LITERT_LIBRARY="$(ls "$HERE"/../../.venv/lib/python3*/site-packages/ai_edge_litert/libLiteRt.so 2>/dev/null | head -1)"
  export LITERT_LIBRARY
fi
exec java -Xss4m -cp "$HERE/build/sparcl-session.jar:/usr/share/java/jna.jar:/usr/share/java/com.android.json.jar" \
  dev.sparcl.ondevice.jvm.AppExampleKt "$@"
