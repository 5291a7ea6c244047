#!/bin/sh
echo "bazel coverage needs the real remote_coverage_tools (offline stand-in)" >&2
exit 1
