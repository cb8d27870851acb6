"""Source code that makes top-level packages unimportable in a subprocess (``python -c``): a meta-path
finder that raises ``ModuleNotFoundError`` for them and records every attempt in ``blocked_attempts``
(so an import caught by the code under test still shows)."""

from __future__ import annotations


def blocker_code(*packages: str) -> str:
    """Code to put first in a ``python -c`` script: ``packages`` (and their submodules) cannot be imported."""
    return f"""
import importlib.abc, sys
blocked_attempts = []
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in {tuple(packages)!r}:
            blocked_attempts.append(fullname)
            raise ModuleNotFoundError(f"No module named {{fullname!r}} (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
"""
