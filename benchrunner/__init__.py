"""benchrunner: benchmark multi-stage torch inference pipelines.

A user's pipeline factory needs only these names::

    from benchrunner import ModuleCall, Pipeline, Stage, Stream, current_chunk

They are imported lazily, so commands that only read results do not pay for torch.
"""

__version__ = "0.1.0"

__all__ = ["ChunkContext", "LoadContext", "ModuleCall", "Pipeline", "Stage", "Stream", "current_chunk",
           "current_load", "__version__"]


def __getattr__(name: str):
    if name in __all__:
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'benchrunner' has no attribute {name!r}")
