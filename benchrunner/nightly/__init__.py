"""Nightly orchestration: run, compare, check, report, notify, record history."""
