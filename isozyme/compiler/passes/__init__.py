"""isozyme's compiler passes, one per file, and the registry of every pass by its
MLIR-style name (:mod:`isozyme.compiler.passes.registry`)."""

from __future__ import annotations

from isozyme.compiler.passes.registry import (
    PassInfo,
    PassOption,
    available_passes,
    build_passes,
    make_pass,
    parse_pass_pipeline,
    pass_factories,
    pass_info,
    pass_names,
    pipeline_spelling,
    register_pass,
    registered_passes,
    run_pass,
    unregister_pass,
)

__all__ = [
    "PassInfo",
    "PassOption",
    "available_passes",
    "build_passes",
    "make_pass",
    "parse_pass_pipeline",
    "pass_factories",
    "pass_info",
    "pass_names",
    "pipeline_spelling",
    "register_pass",
    "registered_passes",
    "run_pass",
    "unregister_pass",
]
