"""Where a command acts: a local data directory or a running server.

Every ``kv``, ``export`` and ``import`` command is written once against ``Target``; the two
implementations translate to the engine (``LocalTarget``) or to the ``KV.*`` RESP commands
(``RedisTarget``).  Values cross this interface as bytes, metadata as parsed JSON, expirations
as epoch seconds, so both backends round-trip the same data.

``open_target`` picks the implementation from the ``--remote`` URL's scheme.  ``http://`` and
``https://`` go to the third implementation, ``RestTarget`` (``rest_target.py``), which speaks
Cloudflare's v4 API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from .output import CLIError, json_text

DEFAULT_DATA_DIR = "./edgekv-data"
#: Workers KV's bulk limit per request.
MAX_BULK_ITEMS = 10_000
#: ``get`` of several keys takes at most 100 (Workers KV's limit).
MAX_BULK_GET = 100
LIST_PAGE = 1000


class Target:
    """One store, seen through the operations the command line needs."""

    #: Shown in messages ("on namespace X" / "at URL").
    description = ""
    #: The namespace the URL itself names (``redis://host:port/DB``), which commands that would
    #: otherwise act on every namespace (export, import, stats) keep to.
    url_namespace: dict | None = None

    # -- namespaces ------------------------------------------------------------
    def list_namespaces(self) -> list[dict]:
        """``[{"id", "title"}]`` in creation order."""
        raise NotImplementedError

    def create_namespace(self, title: str) -> dict:
        raise NotImplementedError

    def rename_namespace(self, ns_id: str, title: str) -> dict:
        raise NotImplementedError

    def delete_namespace(self, ns_id: str) -> None:
        raise NotImplementedError

    def use_namespace(self, ns_id: str) -> None:
        """Make ``ns_id`` the namespace the key operations below act on."""
        raise NotImplementedError

    # -- keys of the current namespace ----------------------------------------
    def put(self, key: str, value: bytes, *, expiration=None, expiration_ttl=None,
            metadata=None) -> None:
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def get_entry(self, key: str) -> tuple[bytes, int | None, object] | None:
        """``(value, expiration seconds or None, metadata or None)``, or None when absent."""
        raise NotImplementedError

    def get_many(self, keys: list[str], with_metadata: bool) -> dict:
        """At most ``MAX_BULK_GET`` keys: ``{key: text | None}`` or, with metadata,
        ``{key: {"value", "metadata"} | None}``."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def list_page(self, prefix: str | None, cursor: str | None, limit: int = LIST_PAGE) -> dict:
        """One page: ``{"keys": [{"name", "expiration"?, "metadata"?}], "list_complete",
        "cursor"?}``."""
        raise NotImplementedError

    def bulk_put(self, items: list[dict]) -> dict:
        """At most ``MAX_BULK_ITEMS`` wrangler-style items: ``{"successful_key_count",
        "unsuccessful_keys", "errors": [(key, message)]}``."""
        raise NotImplementedError

    def bulk_delete(self, keys: list[str]) -> dict:
        raise NotImplementedError

    def count_keys(self) -> int | None:
        """Live keys of the current namespace, for progress bars (None when unknown)."""
        return None

    def close(self) -> None:
        pass

    # -- shared on top of the primitives --------------------------------------
    def list_all(self, prefix: str | None = None) -> Iterator[dict]:
        """Every key, following cursors to the end (wrangler's ``kv key list``)."""
        cursor = None
        while True:
            page = self.list_page(prefix, cursor)
            yield from page["keys"]
            cursor = page.get("cursor")
            if page.get("list_complete") or not cursor:
                return

    def resolve_namespace(self, ns_id: str | None, title: str | None) -> dict:
        namespaces = self.list_namespaces()
        if ns_id is not None:
            for ns in namespaces:
                if ns["id"] == ns_id:
                    return ns
            raise CLIError(f"no namespace with id {ns_id!r}{self._where()}; "
                           f"`edgekv kv namespace list` shows the ids")
        title = "default" if title is None else title
        for ns in namespaces:
            if ns["title"] == title:
                return ns
        raise CLIError(f"no namespace titled {title!r}{self._where()}; create it with "
                       f"`edgekv kv namespace create {title}`")

    def _where(self) -> str:
        return f" in {self.description}" if self.description else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ============================================================================ local


class LocalTarget(Target):
    """The engine, on a data directory this process opens (and locks) itself."""

    def __init__(self, data_dir: str, *, create: bool = True, key_file: str | None = None) -> None:
        from engine import StoreLockedError

        self.data_dir = data_dir
        self.description = data_dir
        if not create and not os.path.isdir(data_dir):
            raise CLIError(f"data directory {data_dir} does not exist; pass --data-dir DIR "
                           f"(or --remote redis://HOST:PORT for a running server)")
        try:
            self.store = open_local_store(data_dir, key_file)
        except StoreLockedError:
            raise CLIError(locked_message(data_dir)) from None
        except PermissionError as exc:
            raise CLIError(f"cannot open data directory {data_dir}: {exc.strerror}") from None
        self.ns = self.store.namespace("default")

    def list_namespaces(self) -> list[dict]:
        return [{"id": i.id, "title": i.title} for i in self.store.list_namespaces()]

    def create_namespace(self, title: str) -> dict:
        info = self.store.create_namespace(title)
        return {"id": info.id, "title": info.title}

    def rename_namespace(self, ns_id: str, title: str) -> dict:
        info = self.store.rename_namespace(ns_id, title)
        return {"id": info.id, "title": info.title}

    def delete_namespace(self, ns_id: str) -> None:
        self.store.delete_namespace(ns_id)

    def use_namespace(self, ns_id: str) -> None:
        self.ns = self.store.namespace(ns_id)

    def put(self, key, value, *, expiration=None, expiration_ttl=None, metadata=None) -> None:
        self.ns.put(key, value, expiration=expiration, expiration_ttl=expiration_ttl,
                    metadata=metadata)

    def get(self, key):
        return self.ns.get(key, type="bytes")

    def get_entry(self, key):
        from engine import semantics
        raw = semantics.encode_key(key)
        semantics.validate_key(raw, self.ns.limits)
        entry = self.ns.get_entry(raw)
        if entry is None:
            return None
        return (bytes(entry.value), entry.expire_ms // 1000 if entry.expire_ms else None,
                json.loads(entry.metadata) if entry.metadata else None)

    def get_many(self, keys, with_metadata):
        if with_metadata:
            result = self.ns.get_with_metadata(keys, type="text")
            return {k: None if v is None else {"value": v.value, "metadata": v.metadata}
                    for k, v in result.items()}
        return self.ns.get(keys, type="text")

    def delete(self, key) -> None:
        self.ns.delete(key)

    def list_page(self, prefix, cursor, limit=LIST_PAGE):
        return self.ns.list(prefix=prefix, cursor=cursor, limit=limit)

    def bulk_put(self, items):
        errors: list = []
        result = self.ns.bulk_put(items, errors=errors)
        result["errors"] = [(key, str(exc)) for key, exc in errors]
        return result

    def bulk_delete(self, keys):
        return self.ns.bulk_delete(keys)

    def count_keys(self):
        return self.store.key_count(self.ns.number)

    def close(self) -> None:
        self.store.close()


def locked_message(data_dir: str) -> str:
    pid = "unknown"
    try:
        with open(os.path.join(data_dir, "LOCK"), encoding="ascii", errors="replace") as f:
            pid = f.read(64).strip() or pid
    except OSError:
        pass
    return (f"data directory {data_dir} is in use by a running server (pid {pid}): "
            f"use --remote redis://127.0.0.1:6379 (that server's address), or stop it first")


# ============================================================================ remote (RESP)


def _wire(args) -> list:
    """Command arguments as bytes: a key that is not UTF-8 comes back from the server as text
    with lone surrogates (``_text``), and must go out as those same bytes, which redis-py's
    strict UTF-8 encoding refuses."""
    return [a.encode("utf-8", "surrogateescape") if isinstance(a, str) else a for a in args]


def _text(value) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _map(value) -> dict:
    """RESP3 maps arrive as dicts with bytes keys; RESP2 as flat lists.  Accept both."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {_text(value[i]): value[i + 1] for i in range(0, len(value), 2)}
    raise CLIError(f"unexpected reply from the server: {value!r}")


def _json_or_none(value):
    if value is None or value == b"":
        return None
    return json.loads(value)


class RedisTarget(Target):
    """A running edgekv server, through redis-py and the ``KV.*`` commands.

    One connection for the whole run: ``SELECT`` is per connection, so a pool could send a
    later command to a connection that never selected the namespace.
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:
            raise CLIError("--remote needs redis-py: pip install redis") from None
        self._redis = redis
        self.description = _redacted(url)
        self.db, connect_url = _split_db(url, self.description)
        #: The namespace ``/DB`` in the URL picks, once connected (``url_namespace``).
        self.url_namespace: dict | None = None
        self._ns_id: str | None = None
        self._max_bulk: int | None = None
        try:
            # Connected without a DB: redis-py would SELECT it as a number on every
            # (re)connection; the namespace is selected below, by id, and a reconnection
            # selects whatever namespace is current (``use_namespace``).
            self.client = redis.Redis.from_url(connect_url, protocol=3,
                                               single_connection_client=True,
                                               socket_timeout=120, socket_connect_timeout=10)
            self.client.ping()
        # AuthenticationError is a ConnectionError to redis-py: it goes first.
        except redis.AuthenticationError as exc:
            raise CLIError(f"the server at {self.description} refused the password "
                           f"({_reason(exc)}); put it in the URL: redis://:PASSWORD@HOST:PORT"
                           ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise CLIError(f"cannot reach the server at {self.description}: "
                           f"{_reason(exc)}; is `edgekv serve` running there?") from None
        except redis.ResponseError as exc:
            raise CLIError(f"the server at {self.description} said: {exc}") from None
        except ValueError as exc:
            raise CLIError(f"bad --remote URL {self.description}: {exc}", exit_code=2) from None
        if self.db is not None:
            namespaces = self.list_namespaces()
            if not 0 <= self.db < len(namespaces):
                self.close()
                raise CLIError(f"namespace index {self.db} in the URL {self.description} is "
                               f"out of range: the server has {len(namespaces)} namespaces "
                               f"(0-{len(namespaces) - 1}); `edgekv kv namespace list` shows "
                               f"them in index order")
            self.url_namespace = namespaces[self.db]
            self.use_namespace(self.url_namespace["id"])

    def _call(self, *args):
        try:
            return self.client.execute_command(*_wire(args))
        except self._redis.ResponseError as exc:
            raise RemoteError(str(exc)) from None
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise CLIError(f"lost the connection to {self.description}: {exc}") from None

    def list_namespaces(self):
        return [{"id": _text(m["id"]), "title": _text(m["title"])}
                for m in map(_map, self._call("KV.NAMESPACE", "LIST"))]

    def create_namespace(self, title):
        m = _map(self._call("KV.NAMESPACE", "CREATE", title))
        return {"id": _text(m["id"]), "title": _text(m["title"])}

    def rename_namespace(self, ns_id, title):
        m = _map(self._call("KV.NAMESPACE", "RENAME", ns_id, title))
        return {"id": _text(m["id"]), "title": _text(m["title"])}

    def delete_namespace(self, ns_id):
        self._call("KV.NAMESPACE", "DELETE", ns_id)

    def use_namespace(self, ns_id):
        self._call("SELECT", ns_id)
        self._ns_id = ns_id
        # redis-py SELECTs ``db`` on every new connection: a reconnection (its retries) or a
        # pipeline's connection then lands in this namespace, never silently in index 0.
        self.client.connection_pool.connection_kwargs["db"] = ns_id
        if self.client.connection is not None:
            self.client.connection.db = ns_id

    def resolve_namespace(self, ns_id, title):
        if ns_id is None and title is None and self.url_namespace is not None:
            # redis://host:port/N: the server's namespace at index N, as redis-cli -n N.
            return self.url_namespace
        return super().resolve_namespace(ns_id, title)

    def put(self, key, value, *, expiration=None, expiration_ttl=None, metadata=None):
        args = ["KV.PUT", key, bytes(value)]
        if expiration is not None:
            args += ["EXPIRATION", str(expiration)]
        if expiration_ttl is not None:
            args += ["EXPIRATION_TTL", str(expiration_ttl)]
        if metadata is not None:
            args += ["METADATA", json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)]
        self._call(*args)

    def get(self, key):
        return self._call("KV.GET", key, "TYPE", "bytes")

    def get_entry(self, key):
        reply = self._call("KV.GET", key, "TYPE", "bytes", "WITHMETADATA")
        if reply is None:
            return None
        m = _map(reply)
        return (m["value"], m.get("expiration") or None, _json_or_none(m.get("metadata")))

    def get_entries(self, keys: list[str]) -> list:
        """``get_entry`` for many keys in one round trip (export of a remote store)."""
        # A pipeline takes its own connection from the pool: select the namespace on it too.
        pipe = self.client.pipeline(transaction=False)
        if self._ns_id is not None:
            pipe.execute_command("SELECT", self._ns_id)
        for key in keys:
            pipe.execute_command(*_wire(("KV.GET", key, "TYPE", "bytes", "WITHMETADATA")))
        out = []
        replies = pipe.execute(raise_on_error=False)
        for reply in replies[1:] if self._ns_id is not None else replies:
            if isinstance(reply, Exception):
                raise RemoteError(str(reply))
            if reply is None:
                out.append(None)
                continue
            m = _map(reply)
            out.append((m["value"], m.get("expiration") or None,
                        _json_or_none(m.get("metadata"))))
        return out

    def get_many(self, keys, with_metadata):
        args = ["KV.MGET", *keys]
        if with_metadata:
            args.append("WITHMETADATA")
        result = {}
        for name, value in _map(self._call(*args)).items():
            if value is None:
                result[name] = None
            elif with_metadata:
                m = _map(value)
                result[name] = {"value": _text(m["value"]),
                                "metadata": _json_or_none(m.get("metadata"))}
            else:
                result[name] = _text(value)
        return result

    def delete(self, key):
        self._call("KV.DEL", key)

    def list_page(self, prefix, cursor, limit=LIST_PAGE):
        args = ["KV.LIST", "LIMIT", str(limit)]
        if prefix:
            args += ["PREFIX", prefix]
        if cursor:
            args += ["CURSOR", cursor]
        m = _map(self._call(*args))
        keys = []
        for item in m["keys"]:
            item = _map(item)
            out = {"name": _text(item["name"])}
            if item.get("expiration") is not None:
                out["expiration"] = int(item["expiration"])
            if item.get("metadata") is not None:
                out["metadata"] = _json_or_none(item["metadata"])
            keys.append(out)
        page = {"keys": keys, "list_complete": bool(m.get("list_complete"))}
        if m.get("cursor"):
            page["cursor"] = _text(m["cursor"])
        return page

    def max_bulk_len(self) -> int:
        """The server's proto-max-bulk-len: no argument (a ``KV.BULKPUT`` body, a value) may be
        longer, or the server drops the connection."""
        if self._max_bulk is None:
            self._max_bulk = DEFAULT_MAX_BULK_LEN
            try:
                reply = self.client.execute_command("CONFIG", "GET", "proto-max-bulk-len")
                found = _map(reply).get("proto-max-bulk-len")
                if found is not None:
                    self._max_bulk = int(found)
            except (self._redis.ResponseError, ValueError, CLIError):
                pass  # CONFIG refused (renamed, ACL): Redis's and edgekv's default
        return self._max_bulk

    def bulk_put(self, items):
        limit = self.max_bulk_len()
        out = {"successful_key_count": 0, "unsuccessful_keys": [], "errors": []}
        for kind, part, body in pack_json_items(items, limit):
            if kind == "batch":
                m = _map(self._call("KV.BULKPUT", body))
                failed = [_text(k) for k in m.get("unsuccessful_keys") or []]
                out["successful_key_count"] += int(m.get("successful_key_count", 0))
                out["unsuccessful_keys"] += failed
                out["errors"] += [(k, "rejected by the server (check its key, value, expiration "
                                      "and metadata)") for k in failed]
            else:
                # Alone over the limit as JSON (a 25 MiB binary value is 33 MiB of base64):
                # sent as KV.PUT, whose value argument is the raw bytes.
                error = self._put_item(part, len(body), limit)
                if error is None:
                    out["successful_key_count"] += 1
                else:
                    out["unsuccessful_keys"].append(part["key"])
                    out["errors"].append((part["key"], error))
        return out

    def _put_item(self, item: dict, json_size: int, limit: int) -> str | None:
        """One bulk item through KV.PUT: None when written, else why not."""
        try:
            value = item_value_bytes(item)
        except ValueError as exc:
            return str(exc)
        if len(value) > limit:
            return (f"the value is {len(value)} bytes ({json_size} as a bulk item), over the "
                    f"server's proto-max-bulk-len of {limit} bytes; raise it on the server "
                    f"(CONFIG SET proto-max-bulk-len) to write this key")
        try:
            self.put(item["key"], value, expiration=item.get("expiration"),
                     expiration_ttl=item.get("expiration_ttl"), metadata=item.get("metadata"))
        except RemoteError as exc:
            return str(exc)
        return None

    def bulk_delete(self, keys):
        if not keys:
            return {"successful_key_count": 0, "unsuccessful_keys": []}
        m = _map(self._call("KV.BULKDEL", *keys))
        return {"successful_key_count": int(m.get("successful_key_count", 0)),
                "unsuccessful_keys": [_text(k) for k in m.get("unsuccessful_keys") or []]}

    def count_keys(self):
        return int(self._call("DBSIZE"))

    def close(self):
        try:
            self.client.close()
        except Exception:  # closing a broken connection must not hide the real error
            pass


class Unreadable:
    """What ``get_entries`` gives for a key it cannot read exactly: export reports the key
    (with ``reason``) instead of writing something that is not what the store holds."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class RemoteError(Exception):
    """An error reply from the server (its text is already the KV message)."""


#: proto-max-bulk-len when the server does not say (Redis's default, and edgekv's).
DEFAULT_MAX_BULK_LEN = 32 * 1024 * 1024


def _split_db(url: str, shown: str) -> tuple[int | None, str]:
    """``(DB index or None, the URL without it)``: ``redis://host:port/2`` is namespace index 2.
    ``unix://`` URLs take it as ``?db=N``, as redis-py does."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    db_text = None
    if parts.scheme != "unix":
        path = parts.path.strip("/")
        if path:
            db_text = path
        parts = parts._replace(path="")
    if "db" in query:
        db_text = query.pop("db")[-1]
        parts = parts._replace(query=urlencode(query, doseq=True))
    if db_text is None:
        return None, urlunsplit(parts)
    if not db_text.isdigit():
        raise CLIError(f"bad --remote URL {shown}: the database must be a namespace index "
                       f"(0, 1, ...), got {db_text!r}", exit_code=2)
    return int(db_text), urlunsplit(parts)


def _reason(exc: Exception) -> str:
    """redis-py's message without its closing period (ours follows with '; ...')."""
    return str(exc).rstrip(". ") or type(exc).__name__


def item_value_bytes(item: dict) -> bytes:
    """A wrangler-style bulk item's value as the bytes it stands for."""
    if item.get("base64"):
        from engine.semantics import decode_base64_value  # lazily, as tools/ does with engine
        try:
            return decode_base64_value(item["value"])
        except ValueError:
            raise ValueError("the value is marked base64 but is not valid base64") from None
    return item["value"].encode("utf-8", "surrogateescape")


def pack_json_items(items: list[dict], limit: int):
    """Cut ``items`` into JSON-array bodies of at most ``limit`` bytes each (the wire size,
    escapes and all).  Yields ``("batch", items, body)``, or ``("single", item, item_json)``
    for an item too large to travel in any array body; the caller decides what to do with
    it."""
    batch: list[dict] = []
    parts: list[bytes] = []
    size = 2  # the brackets
    for item in items:
        part = json_text(item, separators=(",", ":")).encode("utf-8")
        if len(part) + 2 > limit:
            yield "single", item, part
            continue
        extra = len(part) + (1 if parts else 0)
        if parts and size + extra > limit:
            yield "batch", batch, b"[" + b",".join(parts) + b"]"
            batch, parts, size = [], [], 2
            extra = len(part)
        batch.append(item)
        parts.append(part)
        size += extra
    if parts:
        yield "batch", batch, b"[" + b",".join(parts) + b"]"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def open_local_store(data_dir: str, key_file: str | None = None):
    """The engine on ``data_dir``, with its encryption key ring from ``--key-file`` when given
    (else the engine's default: $EDGEKV_KEY_FILE, then ``DATA_DIR.keys``).  A store written
    without encryption is opened as it is unless ``--key-file`` asks for a key ring: reading
    it must not turn encryption on (``edgekv serve --encryption yes`` converts a store)."""
    from engine import Store
    from engine.crypto import is_plaintext_store

    if key_file:
        return Store.open(data_dir, fsync="always", key_file=key_file)
    return Store.open(data_dir, fsync="always", encryption=not is_plaintext_store(data_dir))


def open_target(args, *, create: bool = True) -> Target:
    """The target the command line asked for (``--remote URL`` or ``--data-dir DIR``)."""
    remote = getattr(args, "remote", None)
    if remote and getattr(args, "local", False):
        raise CLIError("--local and --remote contradict each other; pass one", exit_code=2)
    if remote:
        try:
            parts = urlsplit(remote)
            parts.port  # noqa: B018  (a port that is not a number raises here, not later)
        except ValueError as exc:  # "http://[::1": an unclosed IPv6 bracket
            raise CLIError(f"bad --remote URL {remote!r}: {exc}", exit_code=2) from None
        scheme = parts.scheme.lower()
        if scheme in ("redis", "rediss", "unix"):
            return RedisTarget(remote)
        if scheme in ("http", "https"):
            from .rest_target import open_rest_target
            return open_rest_target(remote, args)
        raise CLIError(f"--remote takes a redis://[:PASSWORD@]HOST:PORT[/DB] or "
                       f"http(s)://HOST:PORT[/client/v4] URL, got {remote!r}", exit_code=2)
    return LocalTarget(getattr(args, "data_dir", None) or DEFAULT_DATA_DIR, create=create,
                       key_file=getattr(args, "key_file", None))
