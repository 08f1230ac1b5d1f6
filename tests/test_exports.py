"""
The public names of the public modules, pinned: a name added, removed or
renamed fails here (klein's C{test_exports} pattern).
"""

from __future__ import annotations

import importlib
from typing import List

import pytest

PUBLIC = {
    "amp_dispatch.client": [
        "CallTimedOut",
        "ClientError",
        "DispatchError",
        "DispatcherStats",
        "DispatcherUnavailable",
        "FrontendClient",
        "InvalidArgument",
        "NoWorkerAvailable",
        "Overloaded",
        "RegisteredWorker",
        "SchedulerClient",
        "StoreUnavailable",
        "Worker",
        "WorkerPage",
        "WrongListener",
    ],
    "amp_dispatch.testing": ["DispatcherConfig", "MemoryDispatcher"],
}


@pytest.mark.parametrize(("module", "names"), sorted(PUBLIC.items()))
def test_all_is_the_public_names(module: str, names: List[str]) -> None:
    """
    The module's C{__all__} lists exactly its public names.
    """
    assert sorted(importlib.import_module(module).__all__) == names


@pytest.mark.parametrize(
    ("module", "name"), [(module, name) for module, names in PUBLIC.items() for name in names]
)
def test_public_name_importable(module: str, name: str) -> None:
    """
    Each public name can be imported from its module.
    """
    namespace: dict[str, object] = {}
    exec(f"from {module} import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(module), name)
