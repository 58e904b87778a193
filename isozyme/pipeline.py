"""Build, run and extend isozyme's pass pipeline from Python.

The pipeline that ``autodiff`` runs is a list of named stages (``traced``,
``optimized``, ``differentiated``, ``simplified``, then the target's: ``llvm`` on
``cpu``; ``gpu``, ``cuda``, ``host``, ``llvm`` on ``cuda``/``cuda-emu``), each a list of
xDSL passes from the pass registry. This module lets a compiler researcher

* look passes up and run them by name::

      from isozyme import pipeline
      pipeline.registered_passes()                 # records: name, class, options, doc
      pipeline.run_pass(module, "canonicalize,cse")  # xdsl-opt's spelling
      pipeline.run_pass(module, "inline", keep_ruled=True)

* build and run a pipeline::

      p = pipeline.Pipeline.default(target="cpu")
      p.stage_names                                # ('traced', 'optimized', ...)
      p.run(module, upto="simplified")
      pipeline.Pipeline.parse("canonicalize,cse").run(module)

* plug a custom xDSL ``ModulePass`` into ``autodiff``'s pipeline at a named point —
  ``after``/``before`` a stage or a registered pass — for a ``with`` block (per thread
  and asyncio task) or process-wide::

      with pipeline.extra_passes([MyPass()], after="differentiated"):
          isozyme.autodiff(Reverse, f, Active, Active(1.0))
          isozyme.ir(Reverse, f, Active, Active(1.0), stage="after:my-pass")

      handle = pipeline.insert([MyPass()], after="differentiated")
      ...
      pipeline.remove(handle)          # or remove("my-pass"), or remove() for all

  ``isozyme.ir``, ``isozyme.ir_stages``, ``isozyme diff --print-ir`` and every
  differentiation see the inserted passes: each adds the IR stage ``after:<name>``,
  and the compile cache never reuses code compiled with other custom passes.
"""

from __future__ import annotations

from isozyme.compiler.passes.registry import (
    PassInfo,
    PassOption,
    available_passes,
    make_pass,
    parse_pass_pipeline,
    pass_info,
    pass_names,
    pipeline_spelling,
    register_pass,
    registered_passes,
    run_pass,
    unregister_pass,
)
from isozyme.compiler.pipeline import (
    Insertion,
    Pipeline,
    Stage,
    active_insertions,
    extra_passes,
    insert,
    remove,
    stages_of,
)

__all__ = [
    "Insertion",
    "PassInfo",
    "PassOption",
    "Pipeline",
    "Stage",
    "active_insertions",
    "available_passes",
    "extra_passes",
    "insert",
    "make_pass",
    "parse_pass_pipeline",
    "pass_info",
    "pass_names",
    "pipeline_spelling",
    "register_pass",
    "registered_passes",
    "remove",
    "run_pass",
    "stages_of",
    "unregister_pass",
]
