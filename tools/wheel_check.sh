#!/usr/bin/env bash
# CI: the package as a user gets it. Builds the wheel, installs it into a fresh virtual
# environment outside the checkout (versions held to requirements.txt, so pip takes them from the
# cache tools/setup.sh filled), then, from a folder that is not the checkout, runs the README's
# own-model example saved there, `sparcl-train --help`, and a one-task sparcl-train run of the
# README's main config, which the wheel carries.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT="$PWD"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

.venv/bin/python -m build --wheel --outdir "$WORK/dist" . > "$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log"; exit 1; }
rm -rf build ./*.egg-info
WHEEL="$(ls "$WORK"/dist/sparcl_tf-*.whl)"
echo "wheel_check: $(basename "$WHEEL") ($(stat -c %s "$WHEEL") bytes)"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check -c requirements.txt "$WHEEL"

# The README's first python block is the own-model example.
awk '/^```python/{f=1;next} /^```/{if(f){exit}} f' README.md > "$WORK/own_model.py"
cd "$WORK"
venv/bin/python -c "import sparcl_tf, os; assert '$CHECKOUT' not in sparcl_tf.__file__, sparcl_tf.__file__"
venv/bin/python own_model.py
venv/bin/sparcl-train --help > help.txt
grep -q -- "--workdir" help.txt
venv/bin/sparcl-train --config=configs/split_fmnist.py:sparcl_derpp_90 --workdir=run --quiet \
  --config.data.train_per_task=200 --config.data.test_per_task=100 --config.epochs_per_task=1 \
  --config.data.num_tasks=1
test -f run/results.json
echo "wheel_check: the README example, sparcl-train --help and a sparcl-train run passed outside the checkout"
