"""What went wrong with a request, in the few words a one-line error message has room for."""

from __future__ import annotations

import re

import requests


def short_reason(exc: BaseException) -> str:
    """'connection refused' from requests' long exception chains."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if m:
        return m.group(1).strip().lower()
    if isinstance(exc, requests.exceptions.SSLError):
        m = re.search(r"certificate verify failed: ([^'\")(]+)", text)
        if m or "CERTIFICATE_VERIFY_FAILED" in text:
            return "TLS verification failed" + (f": {m.group(1).strip()}" if m else "")
        return "TLS handshake failed (a plain-HTTP registry must be listed in OCIRUN_INSECURE_REGISTRIES)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    for name in ("RemoteDisconnected", "IncompleteRead", "ConnectionResetError", "Connection broken"):
        if name in text:
            return "connection closed by the registry"
    return text.splitlines()[0][:200] if text else type(exc).__name__
