"""The ``bench`` click group: each command group registers itself from its own module.

Exit codes: 0 ok, 1 regression or budget breach, 2 bad input, 3 locked, 4 notification
failed, 130/143 interrupted.
"""

from __future__ import annotations

import click

from . import compare, history, nightly, profile, report, run, selfcheck


@click.group()
@click.version_option(package_name="benchrunner")
def main() -> None:
    """Benchmark multi-stage torch inference pipelines."""


for _module in (run, profile, compare, selfcheck, report, history, nightly):
    _module.register(main)
