"""``--remote http(s)://...``: a server reached through Cloudflare's Workers KV REST API (v4).

The same API wrangler and the SDKs use, so this target also works against anything else that
speaks it.  Only the standard library is used: the command line must not grow a dependency for
a transport that is plain HTTP and JSON.

Values cross as raw bytes (``GET .../values/KEY`` has no envelope), which is why export reads
through bulk get only when a value decodes cleanly and falls back to the raw read otherwise:
bulk get answers in text, and text cannot carry arbitrary bytes.  A key that is not UTF-8
(spelt with ``\\udcXY`` escapes) has no ``/values/`` path; the bulk routes take it, and its
value is read exactly with edgekv's bulk get ``"type": "base64"``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import uuid
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

from .output import CLIError, has_lone_surrogate, json_text
from .targets import LIST_PAGE, MAX_BULK_GET, Target, Unreadable, pack_json_items

API_ROOT = "/client/v4"
DEFAULT_ACCOUNT = "local"
#: The REST API's largest namespace page.
NAMESPACE_PAGE = 1000
TIMEOUT = 120
#: Bulk get answers in text; this is what it makes of bytes that are not UTF-8.
_REPLACEMENT = "\ufffd"
#: The REST API's largest bulk request body (``MAX_BULK_BODY_BYTES`` in server/http.py).
MAX_BODY_BYTES = 100 * 1024 * 1024
#: Why a key that is not UTF-8 cannot be written or read on its own over REST.
BINARY_KEY = ("the key is not valid UTF-8 (its bytes are shown as \\udcXY escapes): the REST "
              "API has no single-key path for it, only the bulk routes (`kv bulk put|get|"
              "delete`, export, import); or use the server's redis:// URL for this key")
#: A lone surrogate outside \udc80-\udcff in a key: no byte, so no key, and the server
#: would refuse the whole request for it.
NOT_A_BYTE = ("the key holds a lone surrogate escape that is not a byte (only \\udc80-\\udcff "
              "are)")


class RestError(CLIError):
    """An error envelope from the server, with its HTTP status and v4 code kept for callers
    that treat some of them (a missing key) as an answer rather than a failure."""

    def __init__(self, message: str, status: int, code: int | None, result=None,
                 messages: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.result = result
        self.messages = messages or []


def _compact(value) -> bytes:
    # A key byte that is not UTF-8 goes out as its \udcXY escape, which bulk get and bulk
    # delete read back as that byte (raw, it would make the body invalid JSON).
    return json_text(value, separators=(",", ":")).encode("utf-8")


def _text_key(key: str) -> None:
    """Refuse, before any request, a key the REST API cannot take in a path."""
    if has_lone_surrogate(key):
        raise CLIError(BINARY_KEY)


def _byte_key(key: str) -> bool:
    """Whether ``key`` spells bytes: text, with \\udcXY escapes for bytes that are not UTF-8."""
    try:
        key.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def _wire_item(item: dict) -> dict:
    """A bulk item as the REST API takes it: a value string holding \\udcXY escapes (bytes that
    are not UTF-8, as ``kv bulk put`` files may spell them) goes as base64 of those bytes, since
    values must be Unicode text on the wire."""
    value = item["value"]
    if item.get("base64") or not has_lone_surrogate(value):
        return item
    raw = value.encode("utf-8", "surrogateescape")  # UnicodeEncodeError: it spells no bytes
    return dict(item, value=base64.b64encode(raw).decode("ascii"), base64=True)


def _quote_key(key: str) -> str:
    # Keys that are not valid UTF-8 travel as lone surrogates; surrogateescape gives the
    # server back their original bytes.
    return quote(key, safe="", errors="surrogateescape")


class RestTarget(Target):
    """A running server's ``/client/v4/accounts/{account}/storage/kv/namespaces`` routes."""

    def __init__(self, url: str, token: str | None = None, account_id: str | None = None) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise CLIError(f"bad --remote URL {url!r}: expected http://HOST:PORT[/client/v4]",
                           exit_code=2)
        path = parts.path.rstrip("/")
        if not path.endswith(API_ROOT):
            path += API_ROOT
        self.base = parts._replace(path=path, query="", fragment="").geturl()
        self.description = self.base
        self.token = token
        self.account_id = account_id or DEFAULT_ACCOUNT
        self.prefix = (f"{self.base}/accounts/{quote(self.account_id, safe='')}"
                       f"/storage/kv/namespaces")
        self._ns_id: str | None = None

    # -- plumbing --------------------------------------------------------------

    def _request(self, method: str, path: str = "", *, query: dict | None = None,
                 body: bytes | None = None, content_type: str | None = None):
        """``(status, headers, body bytes)`` of a successful answer; errors raise."""
        url = self.prefix + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        req = Request(url, data=body, method=method, headers=headers)
        try:
            with urlopen(req, timeout=TIMEOUT) as resp:
                return resp.status, resp.headers, resp.read()
        except HTTPError as exc:
            raise self._error(exc) from None
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, OSError) and reason.strerror:
                reason = reason.strerror.lower()
            raise CLIError(f"cannot reach the REST API at {self.description}: {reason}; is "
                           f"`edgekv serve --http-port PORT` running there?") from None
        except (TimeoutError, ConnectionError) as exc:
            raise CLIError(f"lost the connection to {self.description}: {exc}") from None
        except http.client.HTTPException:
            # A RESP port answers "-ERR ..." to an HTTP request line.
            raise CLIError(f"{self.description} did not answer as an HTTP server; is it the "
                           f"REST API's port (`edgekv serve --http-port PORT`)? A RESP port "
                           f"takes a redis:// URL") from None

    def _error(self, exc: HTTPError) -> RestError:
        try:
            raw = exc.read()
        except OSError:
            raw = b""
        try:
            envelope = json.loads(raw)
            errors = envelope.get("errors") or []
            result = envelope.get("result")
        except (ValueError, AttributeError):
            errors, result = [], None
        messages = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        code = errors[0].get("code") if errors and isinstance(errors[0], dict) else None
        message = "; ".join(m for m in messages if m) or f"HTTP {exc.code} {exc.reason}"
        if exc.code in (401, 403):
            message = (f"the REST API at {self.description} refused the request ({message}): "
                       f"pass the server's token with --api-token TOKEN (or set "
                       f"CLOUDFLARE_API_TOKEN) and its account with --account-id ID (now "
                       f"{self.account_id!r})")
        return RestError(message, exc.code, code, result, messages)

    def _json(self, method: str, path: str = "", *, query: dict | None = None, payload=None,
              body: bytes | None = None):
        if body is None and payload is not None:
            body = _compact(payload)
        _, _, raw = self._request(method, path, query=query, body=body,
                                  content_type="application/json" if body is not None else None)
        try:
            return json.loads(raw)
        except ValueError:
            shown = raw[:200].decode("utf-8", "replace")
            raise CLIError(f"unexpected answer from {self.description} (not JSON): "
                           f"{shown}") from None

    def _ns_path(self, suffix: str = "") -> str:
        if self._ns_id is None:
            raise CLIError("no namespace selected")
        return f"/{quote(self._ns_id, safe='')}{suffix}"

    @staticmethod
    def _namespace(item: dict) -> dict:
        return {"id": item["id"], "title": item["title"]}

    # -- namespaces ------------------------------------------------------------

    def list_namespaces(self):
        out: list[dict] = []
        page = 1
        while True:
            envelope = self._json("GET", query={"page": page, "per_page": NAMESPACE_PAGE})
            items = envelope.get("result") or []
            out.extend(self._namespace(item) for item in items)
            total = (envelope.get("result_info") or {}).get("total_count")
            if len(items) < NAMESPACE_PAGE or (total is not None and len(out) >= total):
                return out
            page += 1

    def create_namespace(self, title):
        return self._namespace(self._json("POST", payload={"title": title})["result"])

    def rename_namespace(self, ns_id, title):
        envelope = self._json("PUT", f"/{quote(ns_id, safe='')}", payload={"title": title})
        return self._namespace(envelope["result"])

    def delete_namespace(self, ns_id):
        self._json("DELETE", f"/{quote(ns_id, safe='')}")

    def use_namespace(self, ns_id):
        self._ns_id = ns_id

    def resolve_namespace(self, ns_id, title):
        if ns_id is None:
            return super().resolve_namespace(ns_id, title)
        try:
            return self._namespace(self._json("GET", f"/{quote(ns_id, safe='')}")["result"])
        except RestError as exc:
            if exc.status != 404:
                raise
        raise CLIError(f"no namespace with id {ns_id!r}{self._where()}; "
                       f"`edgekv kv namespace list` shows the ids")

    # -- keys ------------------------------------------------------------------

    def put(self, key, value, *, expiration=None, expiration_ttl=None, metadata=None):
        _text_key(key)
        query = {"expiration": expiration, "expiration_ttl": expiration_ttl}
        path = self._ns_path(f"/values/{_quote_key(key)}")
        if metadata is None:
            self._request("PUT", path, query=query, body=bytes(value),
                          content_type="application/octet-stream")
            return
        boundary = uuid.uuid4().hex
        body = b"".join([
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="value"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n", bytes(value), b"\r\n",
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="metadata"\r\n',
            b"Content-Type: application/json\r\n\r\n", _compact(metadata), b"\r\n",
            f"--{boundary}--\r\n".encode()])
        self._request("PUT", path, query=query, body=body,
                      content_type=f"multipart/form-data; boundary={boundary}")

    def _get_value(self, key):
        _text_key(key)
        try:
            _, headers, raw = self._request("GET", self._ns_path(f"/values/{_quote_key(key)}"))
        except RestError as exc:
            if exc.status == 404 and exc.code == 10009:
                return None, None
            raise
        expiration = headers.get("expiration")
        return raw, int(expiration) if expiration else None

    def get(self, key):
        return self._get_value(key)[0]

    def get_entry(self, key):
        value, expiration = self._get_value(key)
        if value is None:
            return None
        try:
            metadata = self._json("GET", self._ns_path(f"/metadata/{_quote_key(key)}"))["result"]
        except RestError as exc:
            if exc.status == 404 and exc.code == 10009:  # deleted between the two reads
                return None
            raise
        return value, expiration, metadata

    def _bulk_get(self, keys, with_metadata: bool) -> dict:
        envelope = self._json("POST", self._ns_path("/bulk/get"),
                              payload={"keys": keys, "type": "text",
                                       "withMetadata": with_metadata})
        return envelope["result"]["values"]

    def get_many(self, keys, with_metadata):
        values = self._bulk_get(keys, with_metadata)
        if not with_metadata:
            return values
        return {k: None if v is None else {"value": v["value"], "metadata": v.get("metadata")}
                for k, v in values.items()}

    def get_entries(self, keys: list[str]) -> list:
        """``get_entry`` for many keys, a bulk get per ``MAX_BULK_GET`` (export)."""
        out = []
        for start in range(0, len(keys), MAX_BULK_GET):
            batch = keys[start:start + MAX_BULK_GET]
            try:
                values = self._bulk_get(batch, True)
            except RestError as exc:
                if exc.status != 413:  # over the bulk get size limit: read one by one
                    raise
                values = {}
            # A key that is not UTF-8 has no /values/ path: when its text may not be its
            # bytes (it holds U+FFFD), edgekv's base64 bulk get reads them exactly.
            inexact = [key for key in batch if has_lone_surrogate(key)
                       and values.get(key) is not None and _REPLACEMENT in values[key]["value"]]
            exact = self._bulk_get_bytes(inexact) if inexact else {}
            for key in batch:
                item = values.get(key)
                if has_lone_surrogate(key):
                    if key in exact:
                        out.append(exact[key])
                    elif item is None:
                        out.append(None)
                    elif _REPLACEMENT in item["value"]:
                        out.append(Unreadable(
                            "the key is not valid UTF-8 and its value may not be either, and "
                            "this server cannot read values as base64 (edgekv's bulk get "
                            "extension); export it over the server's redis:// URL"))
                    else:
                        out.append((item["value"].encode("utf-8"), item.get("expiration"),
                                    item.get("metadata")))
                elif item is None or _REPLACEMENT in item["value"]:
                    # Missing from the answer, gone, or possibly binary: the raw read decides.
                    out.append(self.get_entry(key))
                else:
                    out.append((item["value"].encode("utf-8", "surrogateescape"),
                                item.get("expiration"), item.get("metadata")))
        return out

    def _bulk_get_bytes(self, keys: list[str]) -> dict:
        """``{key: (value bytes, expiration, metadata) or None}`` through bulk get's
        ``"type": "base64"``; ``{}`` from a server without it (a 400 naming the type)."""
        try:
            envelope = self._json("POST", self._ns_path("/bulk/get"),
                                  payload={"keys": keys, "type": "base64",
                                           "withMetadata": True})
        except RestError as exc:
            if exc.status == 413 and len(keys) > 1:  # over the size limit together: one by one
                out = {}
                for key in keys:
                    out.update(self._bulk_get_bytes([key]))
                return out
            if exc.status in (400, 413):  # a server without the type, or one huge value
                return {}
            raise
        out = {}
        for key, item in envelope["result"]["values"].items():
            out[key] = None if item is None else (base64.b64decode(item["value"]),
                                                  item.get("expiration"), item.get("metadata"))
        return out

    def delete(self, key):
        _text_key(key)
        self._json("DELETE", self._ns_path(f"/values/{_quote_key(key)}"))

    def list_page(self, prefix, cursor, limit=LIST_PAGE):
        envelope = self._json("GET", self._ns_path("/keys"),
                              query={"limit": limit, "prefix": prefix or None,
                                     "cursor": cursor or None})
        keys = envelope.get("result") or []
        next_cursor = (envelope.get("result_info") or {}).get("cursor") or ""
        page = {"keys": keys, "list_complete": next_cursor == ""}
        if next_cursor:
            page["cursor"] = next_cursor
        return page

    def _bulk(self, method: str, suffix: str, payload, body: bytes | None = None
              ) -> tuple[dict, dict]:
        """``(result, {key: message})``: a 400 that still carries a result is a partial
        success (the valid items were written), not a failure of the request."""
        try:
            return self._json(method, self._ns_path(suffix), payload=payload,
                              body=body)["result"], {}
        except RestError as exc:
            if exc.status != 400 or not isinstance(exc.result, dict):
                raise
            messages = {}
            for key in exc.result.get("unsuccessful_keys") or []:
                lead = f"{json.dumps(key, ensure_ascii=False)}: "  # the server's spelling
                for part in exc.messages:
                    if part.startswith(lead):
                        messages[key] = part[len(lead):]
                        break
            return exc.result, messages

    def bulk_put(self, items):
        out = {"successful_key_count": 0, "unsuccessful_keys": [], "errors": []}

        def refuse(key, message):
            out["unsuccessful_keys"].append(key)
            out["errors"].append((key, message))

        writable = []
        for item in items:
            # The server refuses a whole request for one string that is not text (past the
            # \udcXY byte escapes of a key): such an item is named here, the rest written.
            if not _byte_key(item["key"]):
                refuse(item["key"], NOT_A_BYTE)
                continue
            try:
                item = _wire_item(item)
            except UnicodeEncodeError:
                refuse(item["key"], "the value holds a lone surrogate escape that is not a "
                                    "byte (only \\udc80-\\udcff are)")
                continue
            if has_lone_surrogate(json.dumps(item.get("metadata"), ensure_ascii=False)):
                refuse(item["key"], "the metadata holds a lone surrogate: it must be Unicode "
                                    "text")
                continue
            writable.append(item)
        for kind, part, body in pack_json_items(writable, MAX_BODY_BYTES):
            if kind == "single":
                refuse(part["key"], f"the item is {len(body)} bytes as JSON, over the REST "
                                    f"API's {MAX_BODY_BYTES}-byte request limit")
                continue
            result, messages = self._bulk("PUT", "/bulk", part, body=body)
            failed = list(result.get("unsuccessful_keys") or [])
            out["successful_key_count"] += int(result.get("successful_key_count", 0))
            for key in failed:
                refuse(key, messages.get(key, "rejected by the server"))
        return out

    def bulk_delete(self, keys):
        # A name that spells no bytes would make the server refuse the whole request.
        failed = [key for key in keys if not _byte_key(key)]
        keys = [key for key in keys if _byte_key(key)]
        if not keys:
            return {"successful_key_count": 0, "unsuccessful_keys": failed}
        result, _ = self._bulk("POST", "/bulk/delete", keys)
        return {"successful_key_count": int(result.get("successful_key_count", 0)),
                "unsuccessful_keys": failed + list(result.get("unsuccessful_keys") or [])}


def open_rest_target(url: str, args) -> RestTarget:
    """Credentials come from the flags, then wrangler's environment variables."""
    token = getattr(args, "api_token", None) or os.environ.get("CLOUDFLARE_API_TOKEN")
    account = (getattr(args, "account_id", None) or os.environ.get("CLOUDFLARE_ACCOUNT_ID")
               or DEFAULT_ACCOUNT)
    return RestTarget(url, token, account)
