"""The payload store: serialized values as objects named by their SHA-256,
under any fsspec URL (``file:///dir``, ``s3://bucket/prefix``, ``gs://...``,
``memory://`` for tests).

Layout under the URL's root: ``<app_id>/objects/<sha256>``, the values, and
``<app_id>/refs/<sha256>/<uuid>``, one small JSON list per write that made a
record refer to an object (its invocation ids), which a sweep reads to know
whether any stored record still refers to it. An object is written before any
record refers to it: whole (a local file is written aside and renamed; an
object store's PUT is atomic), so a writer killed mid-upload leaves no record
pointing at a partial object.

Every read is checked against its hash (``offload.Payloads`` keeps what it
decoded, so a value passed to many invocations is fetched once per process).
Whatever the store raises becomes PayloadStoreError, naming the object and
what it was for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import PayloadStoreError, PayloadStoreUnavailableError, clause
from .refs import PayloadRef

# the object stores' own defaults retry for minutes: a read or write of a value
# gives up (PayloadStoreError) well before that; listings are read fresh (the sweep)
S3_DEFAULTS: dict[str, Any] = {"config_kwargs": {"connect_timeout": 5, "read_timeout": 60,
                                                 "retries": {"max_attempts": 3}},
                               "use_listings_cache": False}


_SHA = re.compile("[0-9a-f]{64}")


def sha256(body: bytes) -> str:
    """The hex SHA-256 an object is named by."""
    return hashlib.sha256(body).hexdigest()


class PayloadStore:
    """One app's objects under one URL (see the module docstring)."""

    def __init__(self, url: str, app_id: str, options: dict[str, Any] | None = None,
                 grace_sec: float = 3600.0):
        self.url, self.app_id = url, app_id
        self.options = dict(options or {})
        self.grace_sec = grace_sec  # the sweep's (payload_grace_sec)
        self._lock = threading.Lock()
        self._fs: Any = None
        self._pid = -1
        self._root = ""

    # -- the filesystem ---------------------------------------------------------

    def _open(self) -> tuple[Any, str]:
        """The fsspec filesystem and this app's root; opened again in a forked child."""
        with self._lock:
            if self._fs is None or self._pid != os.getpid():
                options = dict(self.options)
                if self.url.startswith(("s3://", "s3a://")):
                    options = _s3_options(options)
                try:
                    import fsspec

                    fs, root = fsspec.core.url_to_fs(self.url, **options)
                except Exception as exc:  # fsspec, a driver (s3fs) missing; an unknown protocol
                    raise PayloadStoreUnavailableError(
                        f"payload_store_url {self.url!r} cannot be opened: "
                        f"{type(exc).__name__}: {clause(exc)}. Check the URL, and install "
                        "what it needs: pynenc-ray[store] (pynenc-ray[s3] for s3://)") from None
                self._fs, self._root = fs, f"{root.rstrip('/')}/{self.app_id}"
                self._pid = os.getpid()
            return self._fs, self._root

    def check_opens(self) -> None:
        """PayloadStoreUnavailableError unless this process can open the store's
        URL (its driver installed, its protocol known, its options taken); no
        network call is made."""
        self._open()

    def _local(self) -> bool:
        protocol = self._open()[0].protocol
        return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))

    # -- writing ------------------------------------------------------------------

    def put(self, body: bytes, referrers: Sequence[str], what: str) -> PayloadRef:
        """Store ``body`` and note that the records of ``referrers`` will refer to
        it; its reference. An object already there is not written again unless it
        is older than half the sweep's grace: then it is written anew, so the
        sweep (which takes only objects older than the grace) cannot remove it
        while this submit goes on. PayloadStoreError when the store cannot be
        written."""
        ref = PayloadRef(sha256(body), len(body))
        fs, root = self._open()
        path = f"{root}/objects/{ref.sha256}"
        local = self._local()
        try:
            # the referrers first: a sweep never takes an object a record is about to name
            notes = f"{root}/refs/{ref.sha256}"
            if local:  # (an object store has no directories to make)
                fs.makedirs(notes, exist_ok=True)
            fs.pipe_file(f"{notes}/{uuid.uuid4().hex}", json.dumps(list(referrers)).encode())
            if not self._fresh(fs, path, len(body)):
                if local:  # written aside, then renamed: never seen half-written
                    tmp = f"{root}/objects/.{ref.sha256}.{uuid.uuid4().hex}"
                    fs.makedirs(f"{root}/objects", exist_ok=True)
                    try:
                        fs.pipe_file(tmp, body)
                        fs.mv(tmp, path)
                    except Exception:
                        _quietly(fs.rm, tmp)  # (a full disk: not one partial copy left)
                        raise
                else:
                    fs.pipe_file(path, body)
        except Exception as exc:
            raise PayloadStoreUnavailableError(
                f"{what}: object {ref.sha256} ({len(body)} bytes) cannot be written to the "
                f"payload store {self.url}: {type(exc).__name__}: {clause(exc)}") from None
        return ref

    def _fresh(self, fs: Any, path: str, size: int) -> bool:
        """Whether the object at ``path`` is there whole (of ``size`` bytes: a
        store without atomic writes may hold a partial one) and younger than
        half the grace."""
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return False
        return info.get("size") == size and time.time() - _mtime(info) < self.grace_sec / 2

    # -- reading ------------------------------------------------------------------

    def get(self, ref: PayloadRef, what: str) -> bytes:
        """The object's bytes, checked against its hash. PayloadStoreError when it
        is missing, altered, or the store cannot be read."""
        fs, root = self._open()
        try:
            body = fs.cat_file(f"{root}/objects/{ref.sha256}")
        except FileNotFoundError:
            raise PayloadStoreError(
                f"{what}: object {ref.sha256} is missing from the payload store {self.url} "
                "(removed, or written to another store)") from None
        except Exception as exc:
            raise PayloadStoreUnavailableError(
                f"{what}: object {ref.sha256} cannot be read from the payload store "
                f"{self.url}: {type(exc).__name__}: {clause(exc)}") from None
        if len(body) != ref.size or sha256(body) != ref.sha256:
            raise PayloadStoreError(
                f"{what}: object {ref.sha256} in the payload store {self.url} is altered "
                f"({len(body)} bytes, hash {sha256(body)[:16]}...): it is not used")
        return bytes(body)

    # -- the sweep ------------------------------------------------------------------

    def objects(self) -> Iterator[tuple[str, float]]:
        """Every object's hash and modification time (epoch seconds)."""
        for name, _, written in self._listing():
            if not name.startswith("."):
                yield name, written

    def leftovers(self) -> Iterator[tuple[str, float]]:
        """Copies a writer or a sweep left aside when it died (dot-names under
        objects/: ``.<sha>.<uuid>`` a write, ``.<sha>.removing.<uuid>`` a
        removal): their paths and modification times."""
        for name, path, written in self._listing():
            if name.startswith("."):
                yield path, written

    def _listing(self) -> Iterator[tuple[str, str, float]]:
        fs, root = self._open()
        try:
            entries = fs.ls(f"{root}/objects", detail=True)
        except FileNotFoundError:
            return
        for entry in entries:
            yield entry["name"].rsplit("/", 1)[-1], entry["name"], _mtime(entry)

    def referrers(self, sha: str) -> list[tuple[str, list[str] | None, float]]:
        """Each note of records referring to object ``sha``: where it is, their ids
        (None for a note that does not read: nothing is removed on its say-so),
        and when it was written."""
        fs, root = self._open()
        try:
            entries = fs.ls(f"{root}/refs/{sha}", detail=True)
        except FileNotFoundError:
            return []
        out: list[tuple[str, list[str] | None, float]] = []
        for entry in entries:
            try:
                ids = json.loads(fs.cat_file(entry["name"]))
                if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                    raise ValueError("not a list of ids")
            except Exception:
                ids = None
            out.append((entry["name"], ids, _mtime(entry)))
        return out

    def forget_note(self, path: str) -> None:
        """Remove one note (its records are gone)."""
        _quietly(self._open()[0].rm, path)

    def remove(self, sha: str, notes: Sequence[str]) -> bool:
        """Remove object ``sha`` and its ``notes`` (those the sweep read), unless
        a submit wrote another note meanwhile; whether it was removed.

        A submit writes its note, then the object when it is missing or old.
        So the object is first moved aside, then the notes are listed again: a
        note not read before means a submit refers to it now, and the object
        is put back (a submit that looked while it was aside wrote it anew,
        the same bytes). A submit whose note comes after that listing finds
        the object gone and writes it. Only the notes read are removed."""
        fs, root = self._open()
        path = f"{root}/objects/{sha}"
        aside = f"{root}/objects/.{sha}.removing.{uuid.uuid4().hex}"
        try:
            fs.mv(path, aside)
        except FileNotFoundError:
            return False  # removed by another sweep
        read = set(notes)
        try:
            wanted = any(note not in read for note, _, _ in self.referrers(sha))
        except BaseException:  # not known: it goes back (a sweep killed here leaves
            fs.mv(aside, path)  # the copy aside, which the next one puts back)
            raise
        if wanted:
            fs.mv(aside, path)
            return False
        fs.rm(aside)
        for note in notes:
            _quietly(fs.rm, note)
        return True

    def settle_leftover(self, path: str) -> None:
        """A copy left under a dot-name (``leftovers``): one a sweep set aside
        goes back when its object is missing (a submit may refer to it; the
        next sweep judges it again), anything else is removed."""
        fs, root = self._open()
        name = path.rsplit("/", 1)[-1]
        sha = name[1:].split(".", 1)[0]
        if ".removing." in name and _SHA.fullmatch(sha):
            target = f"{root}/objects/{sha}"
            if not fs.exists(target):
                fs.mv(path, target)
                return
        _quietly(fs.rm, path)


def _s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """The user's s3fs options over S3_DEFAULTS, ``config_kwargs`` merged key by
    key: a ``region_name`` of theirs keeps the timeouts and the retry limit."""
    merged = {**S3_DEFAULTS, **options}
    if isinstance(options.get("config_kwargs"), dict):
        merged["config_kwargs"] = {**S3_DEFAULTS["config_kwargs"], **options["config_kwargs"]}
    return merged


def _quietly(rm: Any, path: str) -> None:
    """Remove ``path`` when it is there; a failure leaves it to a later sweep."""
    try:
        rm(path)
    except Exception:  # (FileNotFoundError, or the store's own)
        pass


def _mtime(entry: dict[str, Any]) -> float:
    """An fsspec listing entry's modification time; now when the store has none."""
    for key in ("mtime", "LastModified", "updated", "created"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if value is not None and hasattr(value, "timestamp"):
            return float(value.timestamp())
    return time.time()
