"""benchrunner: benchmark multi-stage torch inference pipelines."""

__version__ = "0.1.0"
