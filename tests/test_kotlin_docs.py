"""The Kotlin learner's public API carries KDoc, as an Android developer expects: every public
top-level declaration of the app sources, and every public function of it (overrides aside, whose
documentation is the interface's), has a /** ... */ comment right above it (annotations between
are fine)."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = os.path.join(ROOT, "tflite", "android", "app", "src", "main", "java")
TOP_LEVEL = re.compile(r"^(?:(?:data|sealed|abstract|open|enum) )*(?:class|interface|object|fun) ")
MEMBER_FUN = re.compile(r"^ {4}(?:(?:open|abstract|inline|operator) )*fun ")  # class bodies


def _undocumented(path):
    missing, previous, public_owner = [], "", True
    for number, line in enumerate(open(path), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        public = not re.match(r"^\s*(?:private|internal|protected|override)\b", line)
        top_level = re.match(r"^(?:private |internal )?\w", line)
        if top_level and not line.startswith(("import", "package")):
            public_owner = public  # a top-level declaration: are its members public API?
        if public and (TOP_LEVEL.match(line) or (public_owner and MEMBER_FUN.match(line))):
            if not previous.endswith("*/"):
                missing.append(f"{os.path.relpath(path, ROOT)}:{number}: {stripped[:60]}")
        if not stripped.startswith("@"):
            previous = stripped
    return missing


def test_the_public_kotlin_api_has_kdoc():
    files = glob.glob(os.path.join(SOURCES, "**", "*.kt"), recursive=True)
    assert len(files) >= 15
    missing = [entry for path in sorted(files) for entry in _undocumented(path)]
    assert not missing, "public Kotlin declarations without KDoc:\n" + "\n".join(missing)
