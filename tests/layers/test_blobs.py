"""BlobStore: verification, atomic commit, locks across processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import time

import pytest

from layers.blobs import BlobError, BlobStore, parse_digest


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_ingest_bytes_verifies(tmp_path):
    store = BlobStore(tmp_path)
    data = b"hello blob"
    d = _digest(data)
    assert not store.has(d)
    p = store.ingest_bytes(d, data)
    assert p == tmp_path / "blobs" / "sha256" / d.split(":")[1]
    assert store.has(d) and store.verify(d)
    assert store.read_bytes(d) == data
    assert list(store.digests()) == [d]


def test_ingest_rejects_mismatch_and_leaves_nothing(tmp_path):
    store = BlobStore(tmp_path)
    d = _digest(b"right")
    with pytest.raises(BlobError, match="does not match"):
        store.ingest_bytes(d, b"wrong")
    assert not store.has(d)
    src = tmp_path / "src"
    src.write_bytes(b"wrong")
    with pytest.raises(BlobError):
        store.ingest_file(d, src)
    assert not store.has(d)
    assert list((tmp_path / "tmp" / "partial").iterdir()) == []


@pytest.mark.parametrize(
    "bad", ["sha256:../../etc/passwd", "md5:abcd", "sha256:" + "A" * 64, "sha256", "sha256:" + "a" * 63]
)
def test_bad_digests_refused(bad):
    with pytest.raises(BlobError):
        parse_digest(bad)


def test_commit_is_idempotent(tmp_path):
    store = BlobStore(tmp_path)
    data = b"x" * 1000
    d = _digest(data)
    for _ in range(2):
        part = store.partial_path(d)
        part.write_bytes(data)
        assert store.commit(d, part) == store.path(d)
        assert not part.exists()
    assert store.verify(d)


def test_verify_detects_corruption(tmp_path):
    store = BlobStore(tmp_path)
    d = _digest(b"abc")
    p = store.ingest_bytes(d, b"abc")
    p.chmod(0o644)
    p.write_bytes(b"abd")
    assert store.has(d) and not store.verify(d)


def _hold_lock(root, digest, started, hold):
    store = BlobStore(root)
    with store.lock(digest):
        started.set()
        time.sleep(hold)


def test_lock_excludes_another_process(tmp_path):
    d = _digest(b"lock")
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path), d, started, 1.0))
    proc.start()
    assert started.wait(10)
    t0 = time.monotonic()
    with BlobStore(tmp_path).lock(d):
        waited = time.monotonic() - t0
    proc.join(10)
    assert waited > 0.5


def test_lock_excludes_another_thread(tmp_path):
    import threading

    d = _digest(b"thread")
    store = BlobStore(tmp_path)
    order = []

    def worker():
        with store.lock(d):
            order.append("in")
            time.sleep(0.3)
            order.append("out")

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == ["in", "out", "in", "out"]


def test_shared_locks_are_counted_per_process(tmp_path):
    """Two holders of the shared lock in one process; an exclusive request is busy until both leave."""
    from ocirun.util.locks import file_lock

    p = tmp_path / "gc.lock"
    with file_lock(p, shared=True) as a:
        assert a
        with file_lock(p, shared=True) as b:
            assert b
        with file_lock(p, blocking=False) as ex:
            assert ex is False  # still held by the first holder
    with file_lock(p, blocking=False) as ex:
        assert ex is True


def _try_exclusive(path, q):
    from ocirun.util.locks import file_lock

    with file_lock(path, blocking=False) as got:
        q.put(got)


def test_shared_lock_blocks_exclusive_in_another_process(tmp_path):
    from ocirun.util.locks import file_lock

    p = tmp_path / "gc.lock"
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with file_lock(p, shared=True):
        proc = ctx.Process(target=_try_exclusive, args=(p, q))
        proc.start()
        proc.join(10)
        assert q.get(timeout=5) is False
    proc = ctx.Process(target=_try_exclusive, args=(p, q))
    proc.start()
    proc.join(10)
    assert q.get(timeout=5) is True


def _hold_y_then_wait_x(x, y, ready):
    from ocirun.util.locks import file_lock

    with file_lock(y):
        ready.set()
        time.sleep(0.3)
        with file_lock(x):  # waits for the parent's first thread
            pass


def test_crossed_locks_of_two_threaded_processes_are_no_deadlock(tmp_path):
    """Two pulls: process P's thread 1 holds X, its thread 2 waits for Y held by Q, which
    waits for X. The kernel reports EDEADLK (it sees processes, not threads) although
    thread 1 releases X by itself; file_lock must wait, not fail."""
    import threading

    from ocirun.util.locks import file_lock

    x, y = tmp_path / "x.lock", tmp_path / "y.lock"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    errors: list[BaseException] = []
    with file_lock(x):  # thread 1 (this one) holds X
        child = ctx.Process(target=_hold_y_then_wait_x, args=(x, y, ready))
        child.start()
        assert ready.wait(10)
        time.sleep(0.6)  # the child now waits for X

        def thread2():
            try:
                with file_lock(y):
                    pass
            except BaseException as exc:
                errors.append(exc)

        t2 = threading.Thread(target=thread2)
        t2.start()
        time.sleep(0.5)  # thread 2 asks for Y: the cycle the kernel sees
    t2.join(20)
    child.join(20)
    assert not t2.is_alive() and child.exitcode == 0
    assert errors == []
