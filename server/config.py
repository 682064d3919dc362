"""Server settings: defaults, an optional Redis-style config file, and command-line overrides.

The config file uses redis.conf's shape, one ``name value`` per line, ``#`` comments, with the
same names as the long command-line options (``port 6380``, ``fsync everysec``,
``requirepass s3cret``).  Command-line options win over the file.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from dataclasses import dataclass, field, fields

from engine.codec import MAX_COMPRESSION_LEVEL, MIN_COMPRESSION_LEVEL

MIB = 1024 * 1024


@dataclass
class ServerConfig:
    bind: str = "127.0.0.1"
    port: int = 6379
    data_dir: str = "./edgekv-data"
    fsync: str = "always"
    requirepass: str | None = None
    maxclients: int = 10_000
    min_ttl: int = 60
    protected_mode: bool = True
    http_port: int | None = 8787
    http_bind: str | None = None  # defaults to ``bind``
    segment_bytes: int = 64 * MIB
    max_value_bytes: int = 25 * MIB
    proto_max_bulk_len: int = 32 * MIB
    max_multibulk_len: int = 1024 * 1024
    client_query_buffer_limit: int = 1024 * MIB
    client_output_buffer_limit: int = 256 * MIB
    max_namespaces: int = 1000
    write_rate_limit: bool = False
    #: compact in the background once a sealed segment is this fraction dead (0 = never)
    compaction_threshold: float = 0.5
    #: encrypt every record at rest (AES-256-GCM); off only when asked for explicitly
    encryption: bool = True
    #: the key ring; None: $EDGEKV_KEY_FILE, else ``<data dir>.keys`` beside the data directory
    key_file: str | None = None
    #: zstd-compress values at least this long (None: the engine's default; 0 = never)
    compression_threshold: int | None = None
    #: zstd's level, -7 to 22 (None: the engine's default, -1; higher: slower, smaller)
    compression_level: int | None = None
    #: memory for recently read values (None: the engine's default, 64 MiB; 0 = off)
    read_cache: int | None = None
    log_level: str = "INFO"
    # REST API credentials.  With none configured the API refuses every request, unless
    # ``http_anonymous`` is set and the API listens on loopback only.
    api_tokens: list = field(default_factory=list)  # read-write bearer tokens
    api_read_tokens: list = field(default_factory=list)  # read-only bearer tokens
    auth_email: str | None = None  # X-Auth-Email + X-Auth-Key: read-write
    auth_key: str | None = None
    account_id: str | None = None  # None: any account id in the path is accepted
    http_anonymous: bool = False
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        """Refuse settings that would expose an unprotected store (Redis's protected mode)."""
        check_port("port", self.port)
        check_port("http-port", self.http_port)
        if self.fsync not in ("always", "everysec", "no"):
            raise ValueError(f"fsync must be always, everysec or no; got {self.fsync!r}")
        if self.min_ttl < 1:
            raise ValueError(f"min-ttl must be at least 1 second; got {self.min_ttl}")
        level = self.compression_level
        if level is not None and not MIN_COMPRESSION_LEVEL <= level <= MAX_COMPRESSION_LEVEL:
            raise ValueError(f"compression-level must be from {MIN_COMPRESSION_LEVEL} to "
                             f"{MAX_COMPRESSION_LEVEL}; got {level}")
        # The REST API has credentials of its own: with them its bind is not the RESP
        # password's business.
        http_host = self.http_bind if not self.has_api_credentials() else None
        if self.protected_mode and not self.requirepass:
            for host in filter(None, {self.bind, http_host}):
                if not is_loopback(host):
                    raise ValueError(
                        f"refusing to listen on {host} without a password (protected mode): set "
                        f"--requirepass, or pass --protected-mode no if the network is trusted")
        if bool(self.auth_email) != bool(self.auth_key):
            raise ValueError("auth-email and auth-key must be given together")
        if (self.http_anonymous and self.http_port is not None
                and not is_loopback(self.http_bind or self.bind)):
            raise ValueError("http-anonymous yes is only allowed when the REST API listens on "
                             "loopback; configure --api-token instead")

    def store_data_options(self) -> dict:
        """The ``Store.open`` arguments for encryption, compression and the read cache."""
        options: dict = {}
        if not self.encryption:
            options["encryption"] = False
        if self.key_file:
            options["key_file"] = self.key_file
        if self.compression_threshold is not None:
            options["compression_threshold"] = self.compression_threshold
        if self.compression_level is not None:
            options["compression_level"] = self.compression_level
        if self.read_cache is not None:
            options["read_cache_bytes"] = self.read_cache
        return options

    def has_api_credentials(self) -> bool:
        return bool(self.api_tokens or self.api_read_tokens or self.auth_key)

    def bind_addresses(self) -> list[str]:
        return self.bind.split()


def is_loopback(host: str) -> bool:
    for part in host.split():
        if part in ("localhost",):
            continue
        try:
            if not ipaddress.ip_address(part.lstrip("-")).is_loopback:
                return False
        except ValueError:
            return False
    return True


_BOOL = {"yes": True, "no": False, "true": True, "false": False, "1": True, "0": False}


def parse_size(text: str) -> int:
    """Redis's memory units: ``32mb``, ``1gb``, ``512k``, plain bytes."""
    text = text.strip().lower()
    units = {"kb": 1024, "k": 1000, "mb": MIB, "m": 1000 ** 2, "gb": 1024 * MIB, "g": 1000 ** 3,
             "b": 1}
    for suffix, factor in units.items():
        if text.endswith(suffix) and text[: -len(suffix)].strip().isdigit():
            return int(text[: -len(suffix)]) * factor
    return int(text)


_SIZE_FIELDS = {"segment_bytes", "max_value_bytes", "proto_max_bulk_len",
                "client_query_buffer_limit", "client_output_buffer_limit",
                "compression_threshold", "read_cache"}


def parse_port(text: str) -> int:
    """A TCP port, 0..65535 (0 picks a free one), refused with the texts ``--port`` uses."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"not a port number: '{text}'") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a TCP port (0-65535)")
    return port


def check_port(name: str, port) -> None:
    """The same bound for a port set in code (``ServerConfig(port=...)``)."""
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 <= port <= 65535):
        raise ValueError(f"{name}: {port} is not a TCP port (0-65535)")


_INT_FIELDS = ("maxclients", "min_ttl", "max_multibulk_len", "max_namespaces",
               "compression_level")


def coerce(name: str, raw: str):
    """Convert a text setting to the type of the ServerConfig field ``name``; a ValueError
    says what is wrong in words (``load_file`` adds the file, line and setting)."""
    if name in ("port", "http_port"):
        if name == "http_port" and raw.lower() in ("no", "off", "none"):
            return None
        return parse_port(raw)
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got '{raw}'") from None
    if name == "compaction_threshold":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number such as 0.5, got '{raw}'") from None
    if name in _SIZE_FIELDS:
        try:
            return parse_size(raw)
        except ValueError:
            raise ValueError(f"expected a size such as 64mb or 0, got '{raw}'") from None
    if name in ("api_tokens", "api_read_tokens"):
        return raw.split()
    if name in ("protected_mode", "write_rate_limit", "http_anonymous", "encryption"):
        if raw.lower() not in _BOOL:
            raise ValueError(f"{name.replace('_', '-')} must be yes or no; got {raw!r}")
        return _BOOL[raw.lower()]
    if name in ("requirepass", "auth_email", "auth_key", "account_id", "key_file"):
        return raw or None
    return raw


def load_file(path: str) -> dict:
    known = {f.name for f in fields(ServerConfig)}
    values: dict = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                parts = shlex.split(line)
            except ValueError as exc:  # an unbalanced quote
                raise ValueError(f"{path}:{number}: {exc}") from None
            name = parts[0].lower().replace("-", "_")
            if name not in known or name == "extra":
                raise ValueError(f"{path}:{number}: unknown setting {parts[0]!r}")
            try:
                values[name] = coerce(name, " ".join(parts[1:]))
            except ValueError as exc:  # where, which setting, then what is wrong with it
                raise ValueError(f"{path}:{number}: {parts[0]}: {exc}") from None
    return values


def build(file: str | None = None, **overrides) -> ServerConfig:
    values = load_file(file) if file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = ServerConfig(**values)
    if config.http_port == 0:
        config.http_port = None  # --http-port 0: no REST API
    config.data_dir = os.path.abspath(config.data_dir)
    if config.key_file:
        config.key_file = os.path.abspath(config.key_file)
    return config
