"""The ``bench`` command: ``main`` is the click group (main.py); each command group lives in its
own module (run, compare, report, nightly, history, profile, selfcheck) and shares only common.py.
``benchrunner.cli:main`` is the console script's entry point."""

from .main import main

__all__ = ["main"]
