"""`struct utsname` rewriting and the `-k` argument (PRoot's kompat syntax).

`-k 6.1.0-fake` changes only the release. PRoot also accepts the long form
`\\sysname\\nodename\\release\\version\\machine\\domainname\\` (empty fields keep
the real value); so do we.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

UTS_FIELD = 65  # __NEW_UTS_LEN + 1
UTSNAME_SIZE = 6 * UTS_FIELD
_ORDER = ("sysname", "nodename", "release", "version", "machine", "domainname")


@dataclass(frozen=True)
class FakeUname:
    """Replacement values; None keeps what the kernel says."""

    sysname: str | None = None
    nodename: str | None = None
    release: str | None = None
    version: str | None = None
    machine: str | None = None
    domainname: str | None = None

    @classmethod
    def parse(cls, spec: str) -> FakeUname:
        if not spec:
            raise ValueError("the kernel release must not be empty")
        if not spec.startswith("\\"):
            values = {"release": spec}
        else:
            parts = spec.strip("\\").split("\\")
            if len(parts) > len(_ORDER):
                raise ValueError(f"{spec!r}: at most {len(_ORDER)} fields in \\a\\b\\...\\ form")
            values = {name: value for name, value in zip(_ORDER, parts, strict=False) if value}
        for name, value in values.items():
            if len(value.encode()) >= UTS_FIELD:
                raise ValueError(f"{name} {value!r} is longer than {UTS_FIELD - 1} bytes")
        return cls(**values)

    def apply(self, buf: bytes) -> bytes:
        """Return the utsname bytes with the fake fields written in."""
        out = bytearray(buf)
        for index, f in enumerate(fields(self)):
            value = getattr(self, f.name)
            if value is not None:
                raw = value.encode()
                start = index * UTS_FIELD
                out[start : start + UTS_FIELD] = raw + b"\x00" * (UTS_FIELD - len(raw))
        return bytes(out)


def parse_utsname(buf: bytes) -> dict[str, str]:
    """Decode a struct utsname (for tests and traces)."""
    return {
        name: buf[i * UTS_FIELD : (i + 1) * UTS_FIELD].split(b"\x00", 1)[0].decode()
        for i, name in enumerate(_ORDER)
    }
