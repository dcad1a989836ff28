"""A pytest plugin for the nested nbval run of ``tests/test_notebooks.py``: nbval waits a
fixed 5 s for each output message of a cell once the cell has run, which a loaded machine can
exceed; here it waits up to :data:`OUTPUT_TIMEOUT_S`. A cell's own run time is not limited by
this (``--nbval-cell-timeout``)."""

from __future__ import annotations

import pytest

#: seconds nbval waits for each output message of a cell that has finished running
OUTPUT_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every nbval cell :data:`OUTPUT_TIMEOUT_S`."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = OUTPUT_TIMEOUT_S
