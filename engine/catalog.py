"""The namespace catalog: ids, titles and the small numbers that prefix index keys.

Namespaces live in the log like everything else, as records of namespace 0 flagged CATALOG:
the key is the namespace id (32 lowercase hex characters), the value JSON ``{"title", "number"}``,
and a tombstone deletes it.  Numbers are never reused, so records of a deleted namespace can be
recognised (and dropped) forever after, even if a namespace with the same title comes back.

A flush gives a namespace a fresh number; its record also names the number it retires
(``"retired"``) and keeps the namespace's place in creation order (``"order"``, the number it
was created with, written only once it differs from ``number``).  ``retired`` matters because
compaction drops a superseded catalog record: keys written under the old number after a
compaction began sit in segments that compaction does not rewrite, and without it the next
open would see keys under a number no record names, and adopt them as a recovered namespace.
The flush record is older than no key of the number it retires, so it outlives them all.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from .errors import KVValidationError, NamespaceExistsError, NamespaceNotFoundError, quoted

CATALOG_NS = 0
DEFAULT_TITLE = "default"
MAX_NUMBER = 0xFFFF


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    id: str
    title: str
    number: int
    #: place in creation order (SELECT's index follows it): the number it was created with
    order: int

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "supports_url_encoding": True}


def new_namespace_id() -> str:
    return secrets.token_hex(16)


def encode_entry(info: NamespaceInfo, retired: int | None = None) -> bytes:
    entry: dict = {"title": info.title, "number": info.number}
    if info.order != info.number:
        entry["order"] = info.order
    if retired is not None:
        entry["retired"] = retired
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_deletion(info: NamespaceInfo) -> bytes:
    return json.dumps({"number": info.number}).encode("ascii")


class Catalog:
    """In-memory view of the catalog records; the store persists every change first."""

    def __init__(self) -> None:
        self.by_id: dict[str, NamespaceInfo] = {}
        self.by_title: dict[str, NamespaceInfo] = {}
        self.by_number: dict[int, NamespaceInfo] = {}
        self.next_number = 1
        #: Every number ever deleted: records carrying one are dead.
        self.deleted_numbers: set[int] = set()

    def __len__(self) -> int:
        return len(self.by_id)

    # -- replay ---------------------------------------------------------------

    def apply(self, ns_id: str, value: bytes, tombstone: bool) -> None:
        """Replay one catalog record (at recovery, and after each write)."""
        data = json.loads(value) if value else {}
        number = int(data.get("number", 0))
        if number >= self.next_number:
            self.next_number = number + 1
        retired = data.get("retired")
        if retired:
            self.deleted_numbers.add(int(retired))
        old = self.by_id.pop(ns_id, None)
        if old is not None:
            self.by_title.pop(old.title, None)
            self.by_number.pop(old.number, None)
            if old.number != number:
                # A flush gives the namespace a fresh number: the old one's keys are dead.
                self.deleted_numbers.add(old.number)
        if tombstone:
            if number:
                self.deleted_numbers.add(number)
            elif old is not None:
                self.deleted_numbers.add(old.number)
            return
        info = NamespaceInfo(ns_id, data["title"], number, int(data.get("order", number)))
        self.by_id[ns_id] = info
        self.by_title[info.title] = info
        self.by_number[number] = info

    # -- lookups ----------------------------------------------------------------

    def resolve(self, name_or_id: str) -> NamespaceInfo:
        """Find a namespace by id first, then by title."""
        info = self.by_id.get(name_or_id) or self.by_title.get(name_or_id)
        if info is None:
            raise NamespaceNotFoundError(f"namespace not found: {quoted(name_or_id)}")
        return info

    def get(self, ns_id: str) -> NamespaceInfo:
        info = self.by_id.get(ns_id)
        if info is None:
            raise NamespaceNotFoundError(f"namespace not found: {quoted(ns_id)}")
        return info

    def ordered(self) -> list[NamespaceInfo]:
        """Namespaces in creation order (a flush keeps a namespace's place)."""
        return sorted(self.by_id.values(), key=lambda info: (info.order, info.number))

    # -- planning changes (the store writes the record, then calls apply) -----

    def plan_create(self, title: str, max_namespaces: int) -> NamespaceInfo:
        if title in self.by_title:
            raise NamespaceExistsError(
                "create namespace: 'A namespace with this account ID and title already exists'")
        if len(self.by_id) >= max_namespaces:
            from .errors import TooManyNamespacesError
            raise TooManyNamespacesError(
                f"Too many namespaces: the limit of {max_namespaces} is reached.")
        if self.next_number > MAX_NUMBER:
            raise KVValidationError("namespace numbers are exhausted; compact and migrate the store")
        ns_id = new_namespace_id()
        while ns_id in self.by_id:
            ns_id = new_namespace_id()
        return NamespaceInfo(ns_id, title, self.next_number, self.next_number)

    def plan_rename(self, ns_id: str, title: str) -> NamespaceInfo:
        info = self.get(ns_id)
        if info.title == DEFAULT_TITLE and title != DEFAULT_TITLE:
            raise KVValidationError("The default namespace cannot be renamed.")
        other = self.by_title.get(title)
        if other is not None and other.id != ns_id:
            raise NamespaceExistsError(
                "rename namespace: 'A namespace with this account ID and title already exists'")
        return NamespaceInfo(ns_id, title, info.number, info.order)

    def plan_flush(self, ns_id: str) -> NamespaceInfo:
        info = self.get(ns_id)
        if self.next_number > MAX_NUMBER:
            raise KVValidationError("namespace numbers are exhausted; compact and migrate the store")
        return NamespaceInfo(ns_id, info.title, self.next_number, info.order)

    def plan_delete(self, ns_id: str) -> NamespaceInfo:
        info = self.get(ns_id)
        if info.title == DEFAULT_TITLE:
            raise KVValidationError("The default namespace cannot be deleted.")
        return info
