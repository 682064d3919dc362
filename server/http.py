"""Cloudflare's REST API v4 for Workers KV, served by aiohttp beside the RESP server.

Everything lives under ``/client/v4/accounts/{account_id}/storage/kv/namespaces`` so that
wrangler (``CLOUDFLARE_API_BASE_URL=http://host:port/client/v4``) and the official SDKs
(``base_url=...``) work unchanged.  The server shares the process, the event loop and the one
``Store`` with the RESP front end.

Design notes
------------
* Routing is done here on the *raw* request path, not by aiohttp's router (a middleware takes
  every request, so even paths the router cannot match get the envelope): a key may contain
  ``/`` (sent raw, or as ``%2F``), ``?``, ``%``, a newline or anything else, and only the raw
  path keeps those apart.  The key segment is percent-decoded strictly, like
  ``decodeURIComponent``: a stray ``%`` or bytes that are not UTF-8 are a 400.
* Keys that are not UTF-8 (the RESP server allows any bytes) are shown in JSON the way Python's
  ``surrogateescape`` holds them: each stray byte 0xXY as the escape ``\\udcXY``.  Key names
  in bulk write, bulk get and bulk delete accept those escapes back as the bytes, so such a
  key can be exported and imported over REST; every other string of a body (values, metadata,
  titles) must be Unicode text.  Bulk get's ``"type": "base64"`` (an edgekv extension) reads
  values as exact bytes, which text cannot carry.
* Every JSON answer uses the v4 envelope ``{success, errors, messages, result}``; engine errors
  keep their own ``status``, ``code`` and ``message``.  Only a successful value read is raw.
* Writes never fsync on the event loop: they are made with ``durable=False`` and, under
  ``fsync always``, the reply waits for ``Store.wait_durable`` in a worker thread.  The
  request is only answered once its write is on disk, as with RESP.
* Value bodies are read once into one buffer that goes to the engine as is; oversized bodies
  are refused from their ``Content-Length`` before any byte is read.
* Auth: bearer tokens (read-write or read-only) or ``X-Auth-Email`` + ``X-Auth-Key``.  With no
  credentials configured the API refuses everything, unless anonymous access was asked for
  explicitly and the API listens on loopback only (``ServerConfig.check`` enforces that).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import re
from urllib.parse import unquote, unquote_to_bytes

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from engine import semantics
from engine.errors import (KeyNameError, KVError, KVValidationError, NamespaceNotFoundError,
                           PayloadTooLargeError)

log = logging.getLogger("edgekv.http")

API_PREFIX = "/client/v4/accounts/"
NS_INFIX = "/storage/kv/namespaces"
MAX_BULK_BODY_BYTES = 100 * 1024 * 1024
#: Room for a multipart body's boundaries, headers and metadata field around a full value.
MULTIPART_SLACK = 64 * 1024
_CHUNK = 256 * 1024
#: Request lines up to this size reach the API (aiohttp's default is 8190), so an over-long key
#: gets the envelope's 414 rather than aiohttp's plain-text 400.
MAX_REQUEST_LINE = 64 * 1024

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
#: A ``\uD800``..``\uDFFF`` escape: only then can json.loads give a string with a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

AUTH_ERROR = (403, 10000, "Authentication error")
NOT_FOUND_ROUTE = (404, 7003, "No route for the URI")


class ApiError(Exception):
    """An answer decided by this layer (not the engine): status, v4 code and message."""

    def __init__(self, status: int, code: int, message: str, result=None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.result = result


# ---------------------------------------------------------------------------- envelope


def _json_response(payload: dict, status: int = 200) -> web.Response:
    try:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        # A key that is not UTF-8 holds surrogates (\udcXY per stray byte); escaped JSON keeps
        # them, losslessly, where UTF-8 text cannot.
        body = json.dumps(payload).encode("ascii")
    return web.Response(body=body, status=status, content_type="application/json")


def ok(result=None, result_info: dict | None = None, messages: list | None = None):
    payload = {"success": True, "errors": [], "messages": messages or [], "result": result}
    if result_info is not None:
        payload["result_info"] = result_info
    return _json_response(payload)


def failure(status: int, code: int, message: str, result=None, errors: list | None = None):
    return _json_response({"success": False,
                           "errors": errors or [{"code": code, "message": message}],
                           "messages": [], "result": result}, status)


def _kv_error_message(exc: KVError) -> str:
    # Key-name faults carry workerd's client-side wording; over HTTP Miniflare's server text
    # is the one a REST client would see.
    return exc.server_message if isinstance(exc, KeyNameError) else exc.message


# ---------------------------------------------------------------------------- the API


class RestApi:
    def __init__(self, server) -> None:
        self.server = server
        self.store = server.store
        config = server.config
        self.config = config
        self.rw_tokens = [t.encode() for t in config.api_tokens or []]
        self.ro_tokens = [t.encode() for t in config.api_read_tokens or []]
        self.auth_email = config.auth_email
        self.auth_key = config.auth_key.encode() if config.auth_key else None
        self.anonymous = bool(config.http_anonymous)
        self.account_id = config.account_id

    # -- plumbing -----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return failure(exc.status, exc.code, exc.message, exc.result)
        except KVError as exc:
            return failure(exc.status, exc.code, _kv_error_message(exc))
        except web.HTTPRequestEntityTooLarge:
            return failure(413, 10024, f"Request body exceeds the limit of "
                                       f"{MAX_BULK_BODY_BYTES} bytes.")
        except Exception:  # one request's bug must not take the server down
            log.exception("REST API request %s %s failed", request.method, request.raw_path)
            return failure(500, 10000, "Internal server error")

    def _authorize(self, request: web.Request, write: bool) -> None:
        """Decide from the headers alone, before reading a byte of the body."""
        if self.anonymous and not self.config.has_api_credentials():
            # Nothing to check against: clients that insist on sending a token (wrangler
            # does) are let in like anyone else.
            return
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            token = header[7:].strip().encode()
            if any(hmac.compare_digest(token, t) for t in self.rw_tokens):
                return
            if any(hmac.compare_digest(token, t) for t in self.ro_tokens):
                if write:
                    raise ApiError(*AUTH_ERROR)
                return
            raise ApiError(*AUTH_ERROR)
        email = request.headers.get("X-Auth-Email")
        key = request.headers.get("X-Auth-Key")
        if email is not None or key is not None:
            if (self.auth_key is not None and email is not None and key is not None
                    and hmac.compare_digest(email.strip().lower().encode(),
                                            self.auth_email.strip().lower().encode())
                    and hmac.compare_digest(key.strip().encode(), self.auth_key)):
                return
            raise ApiError(*AUTH_ERROR)
        if self.anonymous:
            return
        raise ApiError(*AUTH_ERROR)

    async def _durable(self) -> None:
        """Answer a write only once it is on disk, without blocking the loop on the fsync."""
        store = self.store
        if store.fsync_policy == "always":
            seq = store.last_seq
            if store.durable_seq < seq:
                await asyncio.get_running_loop().run_in_executor(None, store.wait_durable, seq)

    def _namespace(self, ns_id: str, op: str):
        try:
            info = self.store.get_namespace(ns_id)
            return self.store.namespace(info.id)
        except NamespaceNotFoundError:
            raise ApiError(404, 10013, f"{op}: 'namespace not found'") from None

    # -- routing --------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        if not path.startswith(API_PREFIX):
            raise ApiError(*NOT_FOUND_ROUTE)
        rest = path[len(API_PREFIX):]
        account, sep, rest = rest.partition("/")
        if not sep or not (rest == NS_INFIX[1:] or rest.startswith(NS_INFIX[1:] + "/")):
            raise ApiError(*NOT_FOUND_ROUTE)
        rest = rest[len(NS_INFIX) - 1:].lstrip("/") if rest != NS_INFIX[1:] else ""
        method = request.method
        route = self._route(method, rest)
        if route is None:
            raise ApiError(*NOT_FOUND_ROUTE)
        handler, args, write = route
        if handler is None:
            raise ApiError(405, 10000, f"{method} method not allowed for this route")
        self._authorize(request, write)
        if self.account_id is not None and unquote(account) != self.account_id:
            # Same answer as a bad credential: says nothing about which accounts exist.
            raise ApiError(*AUTH_ERROR)
        return await handler(request, *args)

    def _route(self, method: str, rest: str):
        """``(handler, args, is_write)``; ``(None, ..)`` for a known path with a wrong method."""
        if rest == "":
            table = {"GET": (self.list_namespaces, False), "POST": (self.create_namespace, True)}
            return self._pick(table, method, ())
        ns_raw, _, tail = rest.partition("/")
        ns_id = unquote(ns_raw)
        if not ns_id:
            return None
        if tail == "":
            table = {"GET": (self.get_namespace, False), "PUT": (self.rename_namespace, True),
                     "DELETE": (self.delete_namespace, True)}
            return self._pick(table, method, (ns_id,))
        if tail == "keys":
            return self._pick({"GET": (self.list_keys, False)}, method, (ns_id,))
        if tail == "bulk":
            table = {"PUT": (self.bulk_write, True), "DELETE": (self.bulk_delete, True)}
            return self._pick(table, method, (ns_id,))
        if tail == "bulk/delete":
            return self._pick({"POST": (self.bulk_delete, True)}, method, (ns_id,))
        if tail == "bulk/get":
            return self._pick({"POST": (self.bulk_get, False)}, method, (ns_id,))
        kind, sep, key = tail.partition("/")
        if sep and kind in ("values", "metadata"):
            # Everything after the marker is the key, raw slashes included; the handler
            # decodes it (_path_key), after the credentials and the namespace are checked.
            if kind == "metadata":
                return self._pick({"GET": (self.get_metadata, False)}, method, (ns_id, key))
            table = {"GET": (self.get_value, False), "PUT": (self.put_value, True),
                     "DELETE": (self.delete_value, True)}
            return self._pick(table, method, (ns_id, key))
        return None

    @staticmethod
    def _pick(table: dict, method: str, args: tuple):
        entry = table.get(method)
        if entry is None:
            return None, args, False
        return entry[0], args, entry[1]

    # -- namespaces -----------------------------------------------------------------

    async def list_namespaces(self, request: web.Request):
        query = request.rel_url.query
        page = _int_param(query.get("page", "1"), 1, None, 10007, "page")
        per_page = _int_param(query.get("per_page", "20"), 1, 1000, 10008, "per_page")
        order = query.get("order", "id")
        direction = query.get("direction", "asc")
        if order not in ("id", "title"):
            raise ApiError(400, 10001, f"Invalid order {_quoted(order)}: use id or title.")
        if direction not in ("asc", "desc"):
            raise ApiError(400, 10001,
                           f"Invalid direction {_quoted(direction)}: use asc or desc.")
        infos = sorted(self.store.list_namespaces(),
                       key=(lambda i: i.id) if order == "id" else (lambda i: (i.title, i.id)),
                       reverse=direction == "desc")
        start = (page - 1) * per_page
        items = [info.as_dict() for info in infos[start:start + per_page]]
        return ok(items, {"page": page, "per_page": per_page, "count": len(items),
                          "total_count": len(infos)})

    async def create_namespace(self, request: web.Request):
        title = (await _json_body(request, dict)).get("title")
        semantics.validate_title(title, self.store.limits)
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, self.store.create_namespace, title)
        return ok(info.as_dict())

    async def get_namespace(self, request: web.Request, ns_id: str):
        return ok(self._namespace(ns_id, "get namespace").info.as_dict())

    async def rename_namespace(self, request: web.Request, ns_id: str):
        self._namespace(ns_id, "rename namespace")
        title = (await _json_body(request, dict)).get("title")
        semantics.validate_title(title, self.store.limits)
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, self.store.rename_namespace, ns_id, title)
        except NamespaceNotFoundError:
            raise ApiError(404, 10013, "rename namespace: 'namespace not found'") from None
        return ok(info.as_dict())

    async def delete_namespace(self, request: web.Request, ns_id: str):
        self._namespace(ns_id, "remove namespace")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.store.delete_namespace, ns_id)
        except NamespaceNotFoundError:
            raise ApiError(404, 10013, "remove namespace: 'namespace not found'") from None
        return ok({})

    # -- keys -------------------------------------------------------------------------

    async def list_keys(self, request: web.Request, ns_id: str):
        ns = self._namespace(ns_id, "list keys")
        query = request.rel_url.query
        limit = query.get("limit")
        if limit is not None:
            value = semantics.js_parse_int(limit)
            # The REST schema's floor is 10, the binding's 1; the engine checks the rest.
            if value is not None and 0 < value < 10:
                raise KVValidationError(f"Invalid key_count_limit of {limit}. Please specify an "
                                        f"integer of at least 10.", code=10028)
        listing = ns.list(query.get("prefix") or None, limit, query.get("cursor") or None,
                          wire=True)
        keys = listing["keys"]
        return ok(keys, {"count": len(keys), "cursor": listing.get("cursor", "")})

    async def get_value(self, request: web.Request, ns_id: str, key_raw: str):
        ns = self._namespace(ns_id, "get")
        key = _path_key(key_raw, ns.limits)
        entry = ns.get_entry(key)
        if entry is None:
            raise ApiError(404, 10009, "get: 'key not found'")
        headers = {}
        if entry.expire_ms:
            headers["expiration"] = str(entry.expire_ms // 1000)
        # The record's buffer goes out as is: no second copy of a 25 MiB value.
        return web.Response(body=entry.value, headers=headers,
                            content_type="application/octet-stream")

    async def get_metadata(self, request: web.Request, ns_id: str, key_raw: str):
        ns = self._namespace(ns_id, "get")
        key = _path_key(key_raw, ns.limits)
        number = ns.number
        if self.store.lookup(number, key) is None:
            raise ApiError(404, 10009, "get: 'key not found'")
        raw = self.store.metadata_json(number, key)
        return ok(json.loads(raw) if raw else None)

    async def put_value(self, request: web.Request, ns_id: str, key_raw: str):
        ns = self._namespace(ns_id, "put")
        limits = ns.limits
        # Miniflare's order: key, expiration, metadata, value size; the cheap checks come
        # before a byte of the body is read.
        key = _path_key(key_raw, limits)
        query = request.rel_url.query
        expiration, ttl = query.get("expiration"), query.get("expiration_ttl")
        semantics.resolve_expiration_ms(expiration, ttl, now_ms=self.store.clock_ms(),
                                        min_ttl=limits.min_ttl_seconds, wire=True)
        declared = request.content_length
        metadata = None
        if request.content_type == "multipart/form-data":
            if declared is not None and declared > limits.max_value_bytes + MULTIPART_SLACK:
                raise semantics.value_too_large(declared, limits)
            value, metadata = await _read_multipart(request, limits)
        else:
            if declared is not None and declared > limits.max_value_bytes:
                raise semantics.value_too_large(declared, limits)
            value = await _read_value(request.content.read, limits)
        ns.put(key, value, expiration=expiration, expiration_ttl=ttl, metadata=metadata,
               durable=False, wire=True)
        await self._durable()
        return ok({})

    async def delete_value(self, request: web.Request, ns_id: str, key_raw: str):
        ns = self._namespace(ns_id, "remove key")
        key = _path_key(key_raw, ns.limits)
        try:
            _, seq = ns.delete_raw(key, durable=False)
        except NamespaceNotFoundError:
            raise ApiError(404, 10013, "remove key: 'namespace not found'") from None
        if seq:
            await self._durable()
        return ok({})

    # -- bulk ---------------------------------------------------------------------------

    async def bulk_write(self, request: web.Request, ns_id: str):
        ns = self._namespace(ns_id, "bulk write")
        items = await _json_body(request, list, key_names=_bulk_write_keys)
        _check_bulk_items(items)
        errors: list = []
        result = ns.bulk_put(items, errors=errors, durable=False)
        if result["successful_key_count"]:
            await self._durable()
        return _bulk_answer(result, errors)

    async def bulk_delete(self, request: web.Request, ns_id: str):
        ns = self._namespace(ns_id, "bulk remove keys")
        body = await _json_body(request, list, key_names=_bulk_delete_keys)
        keys = [item.get("name", item.get("key")) if isinstance(item, dict) else item
                for item in body]
        for index, key in enumerate(keys):
            if not isinstance(key, str):
                raise _schema_error(f"body[{index}]", "a key name (a string) is required")
        errors = []
        result = ns.bulk_delete(keys, durable=False)
        await self._durable()
        if result["unsuccessful_keys"]:
            for key in result["unsuccessful_keys"]:
                try:
                    semantics.validate_key_server_side(semantics.encode_key(key), ns.limits)
                except KVError as exc:
                    errors.append((key, exc))
            return _bulk_answer(result, errors)
        return ok(result)

    async def bulk_get(self, request: web.Request, ns_id: str):
        ns = self._namespace(ns_id, "bulk get keys")
        body = await _json_body(request, dict, key_names=_bulk_get_keys)
        keys = body.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ApiError(400, 10001, "keys: an array of key names is required")
        with_metadata = _bool_field(body, "withMetadata", "withMetadata")
        if body.get("type") == "base64":
            return ok({"values": _bulk_get_base64(ns, keys, body.get("cacheTtl"),
                                                  with_metadata)})
        found = ns.get_bulk_wire(keys, body.get("type"), body.get("cacheTtl"), with_metadata)
        values = {}
        for name, item in found.items():
            if with_metadata and item is not None:
                entry = {"value": item.value, "metadata": item.metadata}
                if item.expiration is not None:
                    entry["expiration"] = item.expiration
                item = entry
            values[name] = item
        return ok({"values": values})


# ---------------------------------------------------------------------------- helpers


def _int_param(raw: str, low: int, high: int | None, code: int, name: str) -> int:
    value = semantics.js_parse_int(raw)
    if value is None or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, code, f"Invalid {name} of {raw}: it must be an integer {bound}.")
    return value


def _path_key(raw: str, limits) -> bytes:
    """The key segment of a path, decoded like ``decodeURIComponent`` (kv-semantics §1.3): a
    ``%`` not followed by two hex digits, or bytes that are not UTF-8, cannot be a key."""
    try:
        if _BAD_PERCENT.search(raw):
            raise ValueError(raw)
        key = unquote_to_bytes(raw)
        key.decode("utf-8")  # UnicodeDecodeError is a ValueError
    except ValueError:
        raise ApiError(400, 10023, "Could not URL-decode key name") from None
    semantics.validate_key_server_side(key, limits)
    return key


def _quoted(value) -> str:
    """A value as JSON text, for messages (``"x"``, ``true``), cut short if long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 64 else text[:60] + "..."


def _schema_error(where: str, problem: str) -> ApiError:
    return ApiError(400, 10001, f"{where}: {problem}")


def _bool_field(body: dict, name: str, where: str) -> bool:
    value = body.get(name, False)
    if value is not True and value is not False:
        raise _schema_error(where, f"expected true or false, got {_quoted(value)}")
    return value


def _check_bulk_items(items: list) -> None:
    """The bulk-write schema (kv-semantics §3).  An item that does not fit it refuses the whole
    request before anything is written: without a key there is no name to report it under."""
    for index, item in enumerate(items):
        where = f"body[{index}]"
        if not isinstance(item, dict):
            raise _schema_error(where, 'expected an object with "key" and "value"')
        if not isinstance(item.get("key"), str):
            raise _schema_error(f"{where}.key", "a string is required")
        if "value" not in item:
            raise _schema_error(f"{where}.value", "is required")
        _bool_field(item, "base64", f"{where}.base64")
        for name in ("expiration", "expiration_ttl"):
            value = item.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float, str, type(None))):
                raise _schema_error(f"{where}.{name}", f"expected a number, got {_quoted(value)}")


async def _json_body(request: web.Request, kind: type, *, key_names=None):
    """The parsed body, which must be a ``kind``.  ``key_names(body)`` gives ``(names, rest)``:
    the strings that name keys, which may hold the ``\\udcXY`` escapes of a key that is not
    UTF-8 (see the module notes), and everything else, which must be Unicode text."""
    declared = request.content_length
    if declared is not None and declared > MAX_BULK_BODY_BYTES:
        raise ApiError(413, 10024, f"Request body of {declared} bytes exceeds the limit of "
                                   f"{MAX_BULK_BODY_BYTES} bytes.")
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        raise ApiError(400, 10001, "The request body is not valid JSON.") from None
    except RecursionError:
        raise ApiError(400, 10001, "The request body is nested too deeply.") from None
    if not isinstance(body, kind):
        shape = "array" if kind is list else "object"
        raise ApiError(400, 10001, f"The request body must be a JSON {shape}.")
    if _SURROGATE_ESCAPE.search(raw):
        names, rest = key_names(body) if key_names is not None else ((), body)
        # In a key name only U+DC80..U+DCFF stand for bytes (surrogateescape's range).
        _check_text(names, "surrogateescape")
        _check_text(rest, "strict")
    return body


def _bulk_write_keys(items: list) -> tuple[list, list]:
    """Each item's ``key`` string; its other fields (value, metadata...) are the rest."""
    names, rest = [], []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            names.append(item["key"])
            rest.append({field: value for field, value in item.items() if field != "key"})
        else:
            rest.append(item)
    return names, rest


def _bulk_delete_keys(body: list) -> tuple[list, list]:
    """Key strings, and the ``name`` (or ``key``) of ``{"name": k}`` objects."""
    names, rest = [], []
    for item in body:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            for field, value in item.items():
                if field in ("name", "key") and isinstance(value, str):
                    names.append(value)
                else:
                    rest.append(value)
            rest.extend(item)
        else:
            rest.append(item)
    return names, rest


def _bulk_get_keys(body: dict) -> tuple[list, list]:
    """The strings of ``keys``; ``type`` and the other fields are the rest."""
    keys = body.get("keys")
    if not isinstance(keys, list):
        return [], [body]
    names = [k for k in keys if isinstance(k, str)]
    rest = [k for k in keys if not isinstance(k, str)]
    rest.append({field: value for field, value in body.items() if field != "keys"})
    return names, rest


def _bulk_get_base64(ns, keys: list, cache_ttl, with_metadata: bool) -> dict:
    """Bulk get with ``"type": "base64"`` (edgekv's extension): values as base64 of their exact
    bytes.  Text (Cloudflare's ``text``/``json``) turns bytes that are not UTF-8 into U+FFFD,
    and a key that is not UTF-8 has no ``/values/`` path, so this is the only exact read of
    such a key's value over REST (the CLI's export uses it).  Same rules as ``text``: 1..100
    keys, server-side key checks, the 25 MiB total (counted on the base64 text)."""
    limits = ns.limits
    try:
        semantics.check_bulk_get_request(keys, None, limits)
        values: dict = {}
        total = 0
        for key in keys:
            raw_key = semantics.encode_key(key)
            semantics.validate_key_server_side(raw_key, limits)
            semantics.validate_cache_ttl(cache_ttl, limits, wire=True)
            entry = ns.get_entry(raw_key)
            if entry is None:
                values[key] = None
                continue
            value = base64.b64encode(entry.value).decode("ascii")
            total += len(value)
            if with_metadata:
                item = {"value": value,
                        "metadata": json.loads(entry.metadata) if entry.metadata else None}
                if entry.expire_ms:
                    item["expiration"] = entry.expire_ms // 1000
                values[key] = item
            else:
                values[key] = value
        if total > limits.max_bulk_get_bytes:
            raise semantics.bulk_get_too_large(limits)
    except KVError as exc:
        raise exc.with_op("GET_BULK")
    return values


def _check_text(body, errors: str) -> None:
    """Refuse a string holding a lone surrogate (``"\\ud800"``): it is not Unicode text and
    could not be stored or answered."""
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8", errors)
            except UnicodeEncodeError as exc:
                raise ApiError(400, 10001, f"The request body holds a lone surrogate "
                                           f"\\u{ord(item[exc.start]):04x}: JSON strings must "
                                           f"be Unicode text.") from None
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


async def _read_value(read_chunk, limits) -> bytearray:
    """A value body in one buffer; past the value limit it keeps counting (to report the full
    length, as Miniflare does) up to the bulk cap, then stops reading."""
    limit = limits.max_value_bytes
    buf = bytearray()
    total = 0
    while True:
        chunk = await read_chunk(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total <= limit:
            buf += chunk
        elif total > MAX_BULK_BODY_BYTES:
            break
    if total > limit:
        raise semantics.value_too_large(total, limits)
    return buf


async def _read_multipart(request: web.Request, limits) -> tuple[bytearray, bytes | None]:
    """The ``value`` and ``metadata`` fields of a form, the way wrangler and the SDK send it."""
    try:
        return await _read_form(await request.multipart(), limits)
    except (ValueError, HttpProcessingError):
        # No boundary, part headers aiohttp cannot parse, a body that breaks off...
        raise ApiError(400, 10001, "Malformed multipart/form-data body.") from None


async def _read_form(reader, limits) -> tuple[bytearray, bytes | None]:
    value = None
    metadata = None
    while True:
        part = await reader.next()
        if part is None:
            break
        if part.name == "value":
            value = await _read_value(part.read_chunk, limits)
        elif part.name == "metadata":
            metadata = _compact_metadata(await part.read(decode=False), limits)
        elif part.name and part.name.startswith("metadata["):
            # What an SDK makes of a dict: one field per member, every value turned to text.
            # Rebuilding it would silently change types, so say how to send it instead.
            raise ApiError(400, 10001, "metadata must be one form field holding JSON text "
                                       f"(got the field {_quoted(part.name)}); send "
                                       f"json.dumps(...)")
        else:
            await part.release()
    if value is None:
        raise ApiError(400, 10001, "Missing value field")
    return value, metadata


def _compact_metadata(raw: bytes, limits) -> bytes | None:
    """The metadata field as compact JSON (``JSON.stringify``'s spelling, kv-semantics §1.4):
    the 1024-byte limit is then measured on what is stored, whatever spacing or ``\\u``
    escapes the client sent, exactly as for a bulk write."""
    if len(raw) > MULTIPART_SLACK:  # far past any spelling of 1024 compact bytes
        raise PayloadTooLargeError(f"Metadata length of {len(raw)} exceeds limit of "
                                   f"{limits.max_metadata_bytes}.")
    text = bytes(raw).strip()
    if not text:
        return None
    try:
        return json.dumps(json.loads(text), separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or a lone surrogate
        raise ApiError(400, 10012, "Metadata must be valid JSON text.") from None


def _bulk_answer(result: dict, errors: list) -> web.Response:
    """All good: success.  Otherwise 400 naming each bad item; the valid ones were written."""
    if not result["unsuccessful_keys"]:
        return ok(result)
    shown = [{"code": exc.code,
              "message": f"{json.dumps(key, ensure_ascii=False)}: {_kv_error_message(exc)}"}
             for key, exc in errors[:100]]
    if not shown:
        shown = [{"code": 10001, "message": "some items could not be written"}]
    return failure(400, shown[0]["code"], shown[0]["message"], result, shown)


# ---------------------------------------------------------------------------- startup


async def start(server) -> web.AppRunner:
    """Listen on ``http_bind`` (default: the RESP ``bind``) and ``http_port``."""
    config = server.config
    api = RestApi(server)

    @web.middleware
    async def every_request(request: web.Request, handler) -> web.StreamResponse:
        # RestApi routes on the raw path (see the module notes); aiohttp's router, whose
        # plain-text 404 also met keys with a newline, is never consulted.
        return await api.handle(request)

    app = web.Application(client_max_size=MAX_BULK_BODY_BYTES + 1, middlewares=[every_request])
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           max_line_size=MAX_REQUEST_LINE)
    await runner.setup()
    hosts = (config.http_bind or config.bind).split()
    for host in hosts:
        site = web.TCPSite(runner, host, config.http_port, reuse_address=True)
        await site.start()
    if not config.has_api_credentials() and not config.http_anonymous:
        log.warning("REST API on port %d has no credentials configured: every request is "
                    "refused; pass --api-token (or --http-anonymous yes on loopback)",
                    config.http_port)
    else:
        log.info("REST API listening on %s port %d", " ".join(hosts), config.http_port)
    return runner
