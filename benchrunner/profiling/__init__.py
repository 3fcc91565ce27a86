"""``bench profile``: where the time of one case goes, stage by stage, under torch.profiler.

Profiles are stored apart from the benchmark numbers (``<run>/profiles/``), because
profiling overhead must never mix into samples.csv. Reports read them with
:func:`load_profile_summary`; this module imports no torch.
"""

from __future__ import annotations

from .store import load_profile_summary

__all__ = ["load_profile_summary"]
