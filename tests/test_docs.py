"""The documentation: the site (docs/, mkdocs.yml) builds in strict mode, so a broken link, a
missing included file or an API reference that does not resolve fails here; the README stays a
map of at most 250 lines whose every link resolves."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()


def test_the_site_builds_in_strict_mode(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for page in ("index.html", "api/keras/index.html", "api/ondevice/index.html"):
        assert os.path.isfile(tmp_path / "site" / page)
    api = open(tmp_path / "site" / "api" / "keras" / "index.html").read()
    from sparcl_tf import keras as face
    missing = [name for name in face.__all__ if f'id="sparcl_tf.keras.{name}"' not in api]
    assert not missing, f"public names without a documented entry: {missing}"


def test_the_readme_is_a_map_whose_links_resolve():
    assert README.count("\n") <= 250
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    assert len(links) >= 10  # it points into the documentation
    for link in links:
        if re.match(r"^[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        assert os.path.exists(os.path.join(ROOT, path)), link
        if anchor and path.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", open(os.path.join(ROOT, path)).read(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                     for h in headings}
            assert anchor in slugs, link
