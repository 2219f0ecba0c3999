"""What the suite needs from the machine, and what a missing piece does to the tests that need it.

On a developer's machine a missing piece skips those tests, with the reason in the summary. In CI
(`CI=true`, which `.ci/run` and `make test CI=true` set) it fails them, naming what is missing:
a green CI run must mean every test ran. Skips that stay in CI are for what cannot exist on these
machines at all (the google provider, a GPU, a Docker engine); their tests say so themselves.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["in_ci", "require"]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: bool, what: str, hint: str) -> None:
    """Skip (locally) or fail (in CI) the calling test or fixture unless `available`."""
    if available:
        return
    message = f"{what} is missing: {hint}"
    if in_ci():
        pytest.fail(f"{message} (CI runs every test: nothing may be missing)", pytrace=False)
    pytest.skip(message)
