"""isozyme's command-line tools that work on textual IR (``isozyme-opt``), and the helpers
all of isozyme's command lines share (one-line errors, no tracebacks)."""
