"""`struct utsname` rewriting and the `-k` argument (PRoot's kompat syntax).

`-k 6.1.0-fake` changes only the release. PRoot's long form names every field and the
hardware capabilities: `\\sysname\\nodename\\release\\version\\machine\\domainname\\hwcap\\`
(seven fields, each ended by a backslash; an empty field is an empty value; hwcap is
hexadecimal, -1 keeps the real one). As in PRoot, a value longer than the kernel's
64 bytes is cut.
"""

from __future__ import annotations

import re

from ocirun.util.records import dataclass

UTS_FIELD = 65  # __NEW_UTS_LEN + 1
UTSNAME_SIZE = 6 * UTS_FIELD
_ORDER = ("sysname", "nodename", "release", "version", "machine", "domainname")
_HEX = re.compile(r"\s*([+-]?)(?:0[xX])?([0-9a-fA-F]+)\\")  # strtol(.., 16) then the closing backslash


def _cut(value: str) -> str:
    """PRoot's strncpy into a 65-byte field: at most 64 bytes."""
    raw = value.encode()[: UTS_FIELD - 1]
    return raw.decode(errors="ignore")


@dataclass(frozen=True)
class FakeUname:
    """Replacement values; None keeps what the kernel says. hwcap: AT_HWCAP, None keeps it."""

    sysname: str | None = None
    nodename: str | None = None
    release: str | None = None
    version: str | None = None
    machine: str | None = None
    domainname: str | None = None
    hwcap: int | None = None

    @classmethod
    def parse(cls, spec: str) -> FakeUname:
        if not spec:
            raise ValueError("the kernel release must not be empty")
        if not spec.startswith("\\"):
            return cls(release=_cut(spec))
        rest = spec[1:]
        values: dict[str, str] = {}
        for name in _ORDER:
            value, sep, rest = rest.partition("\\")
            if not sep:
                raise ValueError(f"can't find {name} field in {spec!r}")
            values[name] = _cut(value)
        match = _HEX.match(rest)
        if match is None:
            raise ValueError(f"can't find hwcap field in {spec!r}")
        hwcap = int(match.group(1) + match.group(2), 16)
        return cls(**values, hwcap=None if hwcap == -1 else hwcap & 0xFFFFFFFFFFFFFFFF)

    def apply(self, buf: bytes) -> bytes:
        """Return the utsname bytes with the fake fields written in."""
        out = bytearray(buf)
        for index, name in enumerate(_ORDER):
            value = getattr(self, name)
            if value is not None:
                raw = value.encode()
                start = index * UTS_FIELD
                out[start : start + UTS_FIELD] = raw + b"\x00" * (UTS_FIELD - len(raw))
        return bytes(out)

