"""The binaries (console scripts sparcl-*; `python -m tools.X` shims in a checkout)."""
