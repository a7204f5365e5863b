"""OCI distribution client: manifests and verified, resumable blob downloads.

Why not oras-py's `oras.provider.Registry` (installed, checked at 0.2.43): its
`download_blob` writes straight to the output file without checking the digest, has no
HTTP Range resume, its `retry` decorator sleeps 2+3**n s on *any* exception (and
retries none of 429/502/503), `do_request` lets requests follow redirects with the
Authorization header still set for same-host redirects, it keeps one token for all
scopes and raises ValueError instead of saying what failed. Those are the parts a
verified pull is made of, so they are written here on plain `requests`. What oras-py
does serve is used: its manifest/index JSON schemas (`oras.schemas`, applied in
registry.types.parse_manifest).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from ocirun.errors import OcirunError
from registry.auth import Authenticator, Credentials, find_credentials, store_credentials
from registry.config import DOCKER_HUB, DOCKER_HUB_ALIASES, RegistryConfig
from registry.failures import short_reason
from registry.types import (
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_PLAIN,
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    BlobSink,
    Descriptor,
    parse_json_object,
)

CHUNK = 1 << 20
MANIFEST_MAX = 4 << 20  # docker refuses manifests above 4 MiB too
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "ocirun/0.1 (+python-requests)"
MAX_TIMEOUTS = 2  # requests that time out (no answer within RegistryClient.timeout) before giving up
_STREAM_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff (429/5xx/connection errors)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """`OCIRUN_PULL_RETRIES=N` (attempts), `OCIRUN_PULL_BACKOFF=SECONDS` (first delay)."""
        env = os.environ
        return cls(
            attempts=max(1, int(env.get("OCIRUN_PULL_RETRIES", cls.attempts))),
            base_delay=float(env.get("OCIRUN_PULL_BACKOFF", cls.base_delay)),
        )

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_delay)
        d = min(self.base_delay * (2**attempt), self.max_delay)
        return d * (0.75 + random.random() / 2)


Body = bytes | Callable[[], object] | None


def _body(body: Body) -> object:
    return body() if callable(body) else body


def registry_message(resp: requests.Response) -> str:
    """First `errors[].message` of a distribution error body ('' if none)."""
    e = _first_error(resp)
    return f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") if e else ""


def _error_code(resp: requests.Response) -> str:
    return str(_first_error(resp).get("code", ""))


def _first_error(resp: requests.Response) -> dict[str, Any]:
    """`errors[0]` of a distribution error body, {} for any other body."""
    try:
        doc = resp.json()
    except ValueError:
        return {}
    errs = doc.get("errors") if isinstance(doc, dict) else None
    first = errs[0] if isinstance(errs, list) and errs else None
    return first if isinstance(first, dict) else {}


class RegistryClient:
    """One registry endpoint: authenticated requests with retries, manifests, blobs."""

    def __init__(
        self,
        registry: str,
        *,
        config: RegistryConfig | None = None,
        credentials: Credentials | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
    ):
        self.registry = registry
        self.config = config or RegistryConfig.load()
        self.base_url = (base_url or self.config.base_url(registry)).rstrip("/")
        self.host = urlsplit(self.base_url).netloc
        # Loopback and listed-insecure registries: HTTPS without verification if they
        # speak it, else plain HTTP (docker's fallback), decided on the first request.
        self._probe_https = base_url is None and self.base_url.startswith("http://")
        self._probe_lock = threading.Lock()  # concurrent first requests (a push's uploads) wait for it
        self._tried_plain = False
        self.retry = retry or RetryPolicy.from_env()
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # TLS verification stays on unless the user listed the host as insecure.
        self.verify = not (self.base_url.startswith("https://") and self.config.is_insecure(self.host))
        if credentials is None:
            credentials = find_credentials(registry if base_url is None else self.host)
        self.auth = Authenticator(registry, self.session, credentials, verify=self.verify)

    # ------------------------------------------------------------ requests

    def _send_once(self, method: str, url: str, scope: str, headers: dict[str, str], stream: bool, body: Body = None) -> requests.Response:
        """One request; redirects are followed by hand, never with Authorization."""
        h = dict(headers)
        h.update(self.auth.header(scope))
        resp = self.session.request(method, url, headers=h, data=_body(body), stream=stream, timeout=self.timeout, allow_redirects=False, verify=self.verify)
        hops = 0
        while resp.status_code in REDIRECT_STATUS and "Location" in resp.headers:
            hops += 1
            if hops > 10:
                raise OcirunError(f"registry {self.host}: too many redirects for {url}")
            url = urljoin(resp.url, resp.headers["Location"])
            resp.close()
            # Blob storage (S3, CDN) gets no registry credentials: plain headers only.
            # Only a redirect within the registry itself (same scheme and host) keeps them.
            same = url.startswith(self.base_url + "/")
            resp = self.session.request(method, url, headers=h if same else headers, data=_body(body), stream=stream, timeout=self.timeout, allow_redirects=False, verify=self.verify if same else True)
        return resp

    def _send(self, method: str, url: str, scope: str, headers: dict[str, str], stream: bool, body: Body = None) -> requests.Response:
        """A request with the auth dance: on 401 learn the challenge/refresh the token, once."""
        resp = self._send_once(method, url, scope, headers, stream, body)
        if resp.status_code == 401:
            resp.close()
            if self.auth.on_unauthorized(resp, scope):
                resp = self._send_once(method, url, scope, headers, stream, body)
        if resp.status_code == 401:
            msg = registry_message(resp)
            resp.close()
            if self.auth.credentials is None:
                repo = scope.split(":")[1] if scope.startswith("repository:") else ""
                access = "push" if scope.split(" ")[0].endswith("push") else "pull"
                what = f"{access} access denied for {repo}: the repository does not exist or" if repo else f"{self.host}"
                raise OcirunError(f"unauthorized: {what} requires authentication (use `ocirun login {self.registry}`)")
            who = self.auth.credentials.username or "identity token"
            raise OcirunError(f"unauthorized: {self.host} refused access as {who}" + (f" ({msg})" if msg else ""))
        return resp

    def _probe(self) -> None:
        """Use https://HOST (unverified) if the insecure/loopback registry speaks TLS.

        Asks plain HTTP first: a TLS server answers a plain request with 400 (Go's and
        nginx's "HTTP request to an HTTPS server") or a redirect to https, or drops it;
        a registry answers /v2/ with 200 or 401. (A TLS ClientHello sent to a plain
        server instead can hang until a timeout, and loading a CA bundle costs 0.1 s.)
        """
        try:
            resp = self.session.get(f"http://{self.host}/v2/", timeout=(3.0, 10.0), allow_redirects=False)
            resp.close()
            location = resp.headers.get("Location", "")
            if resp.status_code != 400 and not (resp.status_code in REDIRECT_STATUS and location.startswith("https:")):
                return
        except requests.ConnectionError as exc:
            if "refused" in short_reason(exc):
                return  # nothing listening: the real request reports it
        except requests.RequestException:
            return
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        self._tried_plain = True  # plain HTTP failed: a TLS failure now means neither works
        self.base_url = f"https://{self.host}"
        self.verify = self.auth.verify = False

    def request(self, method: str, path: str, *, scope: str = "", headers: dict[str, str] | None = None, stream: bool = False, body: Body = None) -> requests.Response:
        """`path` under /v2/, retried on connection errors, 408/429/5xx (bounded).

        `body` is bytes, or a function giving a fresh body (a file to stream) for each
        attempt, since a retried or re-authenticated request must send it again.
        """
        if self._probe_https:
            with self._probe_lock:
                if self._probe_https:
                    try:
                        self._probe()
                    finally:  # only now: until the scheme is known, other threads wait
                        self._probe_https = False
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/v2/{path.lstrip('/')}"
        last = ""
        timeouts = 0
        for attempt in range(self.retry.attempts):
            try:
                resp = self._send(method, url, scope, headers or {}, stream, body)
            except requests.exceptions.SSLError as exc:
                if self._tried_plain:  # the hint about insecure registries would be wrong here
                    raise OcirunError(f"cannot reach registry {self.host}: it answers neither plain HTTP "
                                      "nor HTTPS like a registry (TLS handshake failed)") from None
                raise OcirunError(f"cannot reach registry {self.host}: {short_reason(exc)}") from None
            except requests.RequestException as exc:
                last = short_reason(exc)
                if isinstance(exc, requests.Timeout):
                    timeouts += 1
                    if timeouts >= MAX_TIMEOUTS:  # a silent registry: minutes of waiting help nobody
                        break
                if attempt + 1 < self.retry.attempts:
                    time.sleep(self.retry.delay(attempt))
                continue
            if resp.status_code in RETRY_STATUS and attempt + 1 < self.retry.attempts:
                retry_after = resp.headers.get("Retry-After")
                resp.close()
                time.sleep(self.retry.delay(attempt, retry_after))
                continue
            return resp
        if timeouts:
            last = f"timed out {timeouts} times (no answer within {self.timeout[1]:g} s)"
        raise OcirunError(f"cannot reach registry {self.host}: {last}")

    def check_login(self) -> None:
        """GET /v2/ with the configured credentials (login verification)."""
        resp = self.request("GET", "", scope="")
        if resp.status_code == 200:
            # Registry answered without asking: for a token registry, ask the token
            # server anyway so bad credentials are noticed (docker does the same).
            return
        raise OcirunError(f"registry {self.host} answered HTTP {resp.status_code} to /v2/")

    # ------------------------------------------------------------ manifests

    def get_manifest(self, repo: str, ref: str, *, display: str | None = None) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index; digest checked if `ref` is one."""
        display = display or f"{self.registry}/{repo}:{ref}"
        scope = f"repository:{repo}:pull"
        resp = self.request("GET", f"{repo}/manifests/{ref}", scope=scope, headers={"Accept": MANIFEST_ACCEPT})
        with resp:
            if resp.status_code == 404:
                code = _error_code(resp)
                detail = "repository does not exist" if code == "NAME_UNKNOWN" else "manifest unknown"
                raise OcirunError(f"manifest for {display} not found: {detail}")
            if resp.status_code == 403:
                raise OcirunError(f"unauthorized: {self.host} denied access to {repo}")
            if resp.status_code != 200:
                msg = registry_message(resp)
                raise OcirunError(f"registry {self.host} answered HTTP {resp.status_code} for manifest {display}" + (f": {msg}" if msg else ""))
            length = int(resp.headers.get("Content-Length") or 0)
            if length > MANIFEST_MAX:
                raise OcirunError(f"manifest for {display} is too large ({length} bytes)")
            data = resp.content[: MANIFEST_MAX + 1]
        if len(data) > MANIFEST_MAX:
            raise OcirunError(f"manifest for {display} is too large")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise OcirunError(f"manifest {ref} does not match its digest (got {digest})")
        media_type = manifest_media_type(data, resp.headers.get("Content-Type", ""), display)
        return data, media_type, digest

    # ------------------------------------------------------------ blobs

    def fetch_small(self, repo: str, desc: Descriptor, limit: int = 64 << 20) -> bytes:
        """A small blob (image config) into memory, verified against its digest."""
        resp = self.request("GET", f"{repo}/blobs/{desc.digest}", scope=f"repository:{repo}:pull", stream=True)
        with resp:
            if resp.status_code == 404:
                raise OcirunError(f"blob {desc.digest} not found in {self.registry}/{repo}")
            if resp.status_code != 200:
                raise OcirunError(f"registry {self.host} answered HTTP {resp.status_code} for blob {desc.digest}")
            try:
                data = resp.raw.read(limit + 1, decode_content=False)
            except _STREAM_ERRORS as exc:
                raise OcirunError(f"blob {desc.digest} is truncated: {short_reason(exc)}") from None
        if len(data) > limit:
            raise OcirunError(f"blob {desc.digest} is too large for an image config")
        if "sha256:" + hashlib.sha256(data).hexdigest() != desc.digest:
            raise OcirunError(f"blob {desc.digest} does not match its digest")
        return data

    def fetch_blob(self, repo: str, desc: Descriptor, sink: BlobSink, *, on_start: Callable[[int], None] | None = None, on_bytes: Callable[[int], None] | None = None) -> Path | None:
        """Download `desc` into the sink, verified; resume a partial file; None if already stored."""
        if sink.has(desc.digest):
            return None
        with sink.lock(desc.digest):
            if sink.has(desc.digest):  # another process finished it while we waited
                return None
            partial = sink.partial_path(desc.digest)
            return self._download_locked(repo, desc, sink, partial, on_start or (lambda _o: None), on_bytes or (lambda _n: None))

    def _download_locked(self, repo: str, desc: Descriptor, sink: BlobSink, partial: Path, on_start: Callable[[int], None], on_bytes: Callable[[int], None]) -> Path:
        algo, _, expected = desc.digest.partition(":")
        if algo != "sha256" or len(expected) != 64:
            raise OcirunError(f"blob {desc.digest}: unsupported digest algorithm")
        scope = f"repository:{repo}:pull"
        attempt = 0
        restarted = False
        last_error = ""
        while True:
            hasher, offset = _hash_existing(partial)
            if desc.size >= 0 and offset > desc.size:
                partial.unlink()
                hasher, offset = hashlib.sha256(), 0
            if desc.size >= 0 and offset == desc.size:
                if hasher.hexdigest() == expected:
                    return sink.commit(desc.digest, partial)
                partial.unlink()  # old partial was garbage: start over
                hasher, offset = hashlib.sha256(), 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self.request("GET", f"{repo}/blobs/{desc.digest}", scope=scope, headers=headers, stream=True)
            got, dropped = 0, False
            try:
                if resp.status_code == 416 and offset:
                    partial.unlink()
                    continue
                if resp.status_code == 404:
                    raise OcirunError(f"blob {desc.digest} not found in {self.registry}/{repo}")
                if resp.status_code not in (200, 206):
                    msg = registry_message(resp)
                    raise OcirunError(f"registry {self.host} answered HTTP {resp.status_code} for blob {desc.digest}" + (f": {msg}" if msg else ""))
                if resp.status_code == 200 and offset:
                    hasher, offset = hashlib.sha256(), 0  # server ignored Range: start over
                on_start(offset)
                got, dropped, reason = _write_body(resp, partial, offset, hasher, desc.size, on_bytes)
                if dropped:
                    last_error = reason
            finally:
                resp.close()
            total = offset + got
            if desc.size < 0 or total >= desc.size:
                if total == desc.size or desc.size < 0:
                    if hasher.hexdigest() == expected:
                        return sink.commit(desc.digest, partial)
                partial.unlink(missing_ok=True)
                if offset and not restarted:
                    restarted = True  # the resumed prefix may have been bad: one clean try
                    continue
                raise OcirunError(f"blob {desc.digest} does not match its digest")
            # Short read: the connection dropped (retry, resuming) or the server cleanly
            # sent less than promised; a clean end with no progress will not get better.
            attempt += 1
            if (got == 0 and not dropped) or attempt >= self.retry.attempts:
                why = f" ({last_error})" if last_error else ""
                raise OcirunError(f"blob {desc.digest} is truncated: got {total} of {desc.size} bytes from {self.host}{why}")
            time.sleep(self.retry.delay(attempt - 1))


def _write_body(resp: requests.Response, partial: Path, offset: int, hasher: Any, size: int,
                on_bytes: Callable[[int], None]) -> tuple[int, bool, str]:
    """Write the body to `partial` (appended after `offset` bytes), hashing it; stop once
    past `size` (<0: unknown). Returns (bytes got, whether the stream dropped, why)."""
    got = 0
    with open(partial, "ab" if offset else "wb") as f:
        try:
            for chunk in _chunks(resp):
                f.write(chunk)
                hasher.update(chunk)
                got += len(chunk)
                on_bytes(len(chunk))
                if size >= 0 and offset + got > size:
                    break
        except _STREAM_ERRORS as exc:
            return got, True, short_reason(exc)
    return got, False, ""


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    """Body bytes as they arrive (read1: up to CHUNK, without waiting to fill it), undecoded.

    Waiting for full 1 MiB reads would delay progress and cancellation on slow links.
    """
    raw = resp.raw
    while chunk := raw.read1(CHUNK, decode_content=False):
        yield chunk


def _hash_existing(partial: Path) -> tuple[hashlib._Hash, int]:
    """sha256 state and size of an existing partial download (resume point)."""
    hasher = hashlib.sha256()
    size = 0
    try:
        with open(partial, "rb") as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        pass
    return hasher, size


def manifest_media_type(data: bytes, content_type: str, display: str) -> str:
    """The manifest's media type: its own `mediaType`, else the Content-Type, else guessed."""
    content_type = content_type.split(";")[0].strip()
    obj = parse_json_object(data, f"manifest for {display}")
    mt = obj.get("mediaType") or content_type
    if mt in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_PLAIN) or obj.get("schemaVersion") == 1:
        raise OcirunError(f"manifest for {display} uses Docker schema 1, which is not supported")
    if mt not in INDEX_TYPES and mt not in MANIFEST_TYPES:
        # OCI allows omitting mediaType: tell index from manifest by shape.
        if "manifests" in obj:
            mt = "application/vnd.oci.image.index.v1+json"
        elif "config" in obj and "layers" in obj:
            mt = "application/vnd.oci.image.manifest.v1+json"
        else:
            raise OcirunError(f"manifest for {display} has unsupported media type {mt!r}")
    return mt


def login(registry: str, username: str, password: str) -> Path:
    """Check the credentials against the registry, then store them; returns the file."""
    registry = DOCKER_HUB if registry in DOCKER_HUB_ALIASES else registry
    creds = Credentials(username, password)
    client = RegistryClient(registry, credentials=creds)
    client.check_login()
    return store_credentials(registry, creds)
