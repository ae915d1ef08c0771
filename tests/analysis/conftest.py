"""Fixtures shared by the analysis tests: every invariant pattern in one journal, a demo copy."""

from invariant_journals import demo, everything

__all__ = ["demo", "everything"]
