"""Small formatting helpers shared by the CLI and the TUI."""

from __future__ import annotations


def human_bytes(value: float | int | None) -> str:
    """1536 -> '1.5 KiB'; None -> '-'."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_seconds(value: float | None) -> str:
    """12.3 -> '12.3 s'; 754 -> '12 min 34 s'; 7384 -> '2 h 03 min'; None -> '-'."""
    if value is None:
        return "-"
    if value < 59.95:
        return f"{value:.1f} s"
    if round(value) < 3600:
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(round(value) // 60, 60)
    return f"{hours} h {minutes:02d} min"


def human_count(value: int | None) -> str:
    """30_000_000 -> '30M'; 200_000 -> '200k'; 1_500 -> '1.5k'; 999 -> '999'; None -> '-'."""
    if value is None:
        return "-"
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + unit
    return str(value)
