#!/usr/bin/env bash
# Installs Debian's offline Bazel (bazel-bootstrap 4.2.3) and the platforms it needs; the
# project's .venv comes from tools/setup.sh. Then: bazel test //...   (or //tflite/... for the
# C tests alone). Idempotent.
set -euo pipefail
if ! command -v bazel > /dev/null || [ ! -f /usr/share/bazel/tools/platforms/WORKSPACE ]; then
  echo "bazel_setup: installing Debian packages bazel-bootstrap and bazel-platforms"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bazel-bootstrap bazel-platforms
fi
echo "bazel_setup: $(bazel --version 2>/dev/null | tail -1)"
