"""edgekv's storage engine: a log-structured key-value store with the Workers KV API.

    from engine import Store
    with Store.open("./edgekv-data") as store:
        ns = store.namespace("default")
        ns.put("greeting", "hello", metadata={"lang": "en"})
        ns.get("greeting")                     # 'hello'

No networking lives here: the RESP and HTTP servers and the CLI are thin layers on this API.
"""

from .catalog import NamespaceInfo
from .errors import (CorruptionError, KeyNameError, KeyTooLongError, KVError, KVValidationError,
                     NamespaceExistsError, NamespaceNotFoundError, PayloadTooLargeError,
                     ResponseTypeError, StoreClosedError, StoreError, StoreLockedError,
                     TooManyNamespacesError, TooManyRequestsError, WriteFailedError)
from .namespace import Namespace, ValueWithMetadata
from .semantics import DEFAULT_LIMITS, Limits
from .store import Entry, Store, Write

__all__ = [
    "Store", "Namespace", "NamespaceInfo", "ValueWithMetadata", "Entry", "Write", "Limits",
    "DEFAULT_LIMITS", "KVError", "KVValidationError", "KeyNameError", "KeyTooLongError",
    "PayloadTooLargeError", "TooManyRequestsError", "ResponseTypeError", "NamespaceNotFoundError",
    "NamespaceExistsError", "TooManyNamespacesError", "CorruptionError", "StoreError",
    "StoreLockedError", "StoreClosedError", "WriteFailedError",
]
