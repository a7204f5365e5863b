"""Text for people, as docker prints it: sizes, durations, times ago, column tables;
and the one shape of number pair options share (`A[:B]`)."""

from __future__ import annotations

import time


def int_pair(text: str, sep: str) -> tuple[int, int]:
    """`A` or `A<sep>B` as two integers (B is A when absent): `-i 1000:100`, `-p 80-90`.
    ValueError when either is not an integer; the caller checks the range."""
    first, has_sep, second = text.partition(sep)
    a = int(first)
    return a, int(second) if has_sep else a


def human_size(n: float) -> str:
    """4260000 -> '4.26MB': docker's units.HumanSize (powers of 1000, three significant digits)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}TB"


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: '3 days', 'About an hour', 'Less than a second'."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(seconds / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def parse_time(text: str) -> float | None:
    """An RFC 3339 time (Go's nanoseconds allowed) as a Unix time; None if empty or invalid."""
    import datetime as _dt  # (here: the engine imports this module, and every start would pay for datetime)

    if not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:  # keep microseconds for Python
        head, _, tail = t.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        t = f"{head}.{digits[:6]}{zone}"
    try:
        dt = _dt.datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.UTC)
    return dt.timestamp()


def human_ago(text: str, now: float | None = None) -> str:
    """RFC 3339 time -> '2 weeks ago' (docker's CREATED columns); 'N/A' if it does not parse."""
    ts = parse_time(text)
    if ts is None:
        return "N/A"
    return f"{human_duration(max(0.0, (time.time() if now is None else now) - ts))} ago"


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns three spaces apart (the first row is the header), no trailing blanks."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
