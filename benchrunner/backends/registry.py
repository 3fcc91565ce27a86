"""The backends by name: adding one is a new module plus one line here."""

from __future__ import annotations

from .base import Backend
from .compile import CompileBackend
from .eager import EagerBackend
from .onnxruntime import OnnxRuntimeBackend
from .openvino import OpenVinoBackend

BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (EagerBackend(), CompileBackend(), OnnxRuntimeBackend(), OpenVinoBackend())
}
