#!/usr/bin/env bash
# Runs the app-shaped example (jvm/src/.../AppExample.kt: a DeviceLearner fed one task at a time)
# on the desktop LiteRT runtime, through session.sh; build it first with ./build.sh. Flags:
# ./app_example.sh --help.
SPARCL_MAIN=dev.sparcl.ondevice.jvm.AppExampleKt exec "$(dirname "$0")/session.sh" "$@"
