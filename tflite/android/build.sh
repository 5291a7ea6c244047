#!/usr/bin/env bash
# Compiles every Kotlin source of tflite/android into build/sparcl-session.jar: the session (the
# code an app ships), the Android adapter type-checked against the LiteRT Java API declarations in
# stubs/ (never packaged: an app links the real AAR), and the desktop JVM host (jvm/). Installs the
# pinned kotlinc (package-lock.json) into node_modules/ and Debian's JNA and org.json when missing.
# Skips the compile when the jar is newer than every source. Run the host with ./session.sh.
set -euo pipefail
cd "$(dirname "$0")"

JARS=(/usr/share/java/jna.jar /usr/share/java/com.android.json.jar)
for jar in "${JARS[@]}"; do
  if [ ! -f "$jar" ]; then
    echo "build: installing Debian packages libjna-java libandroid-json-java"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libjna-java libandroid-json-java
    break
  fi
done
KOTLINC=node_modules/kotlin-compiler/bin/kotlinc
if [ ! -x "$KOTLINC" ]; then
  echo "build: installing kotlin-compiler from the npm registry (package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error
fi

mapfile -t SOURCES < <(find app/src jvm/src stubs -name '*.kt' -o -name '*.java' | sort)
TARGET=build/sparcl-session.jar
if [ -f "$TARGET" ] && [ -z "$(find "${SOURCES[@]}" build.sh -newer "$TARGET")" ]; then
  echo "build: $TARGET is up to date"
  exit 0
fi
mkdir -p build
CLASSPATH_JARS="$(IFS=:; echo "${JARS[*]}")"
"$KOTLINC" -Werror -jvm-target 17 -cp "$CLASSPATH_JARS" -include-runtime -d build/partial.jar "${SOURCES[@]}"
mv build/partial.jar "$TARGET"
echo "build: compiled ${#SOURCES[@]} sources into $TARGET"
