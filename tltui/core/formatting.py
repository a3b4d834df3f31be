"""How numbers read in text, the same in the CLI and the app (no UI imports): parameter counts."""

from __future__ import annotations


def params(n: int | None) -> str:
    """A parameter count as people read it: ``9999`` -> ``9999``, ``158_500`` -> ``158.5k``,
    ``11_810_000`` -> ``11.81M``; ``None`` (unknown) -> ``-``."""
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 10_000:
        return f"{n / 1e3:.1f}k"
    return str(n)
