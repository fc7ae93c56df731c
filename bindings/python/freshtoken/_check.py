"""The boundary's argument checks (DESIGN 16): every value a caller hands
to freshtoken is checked here before anything crosses into the core, and a
bad one raises :class:`ConfigError` naming the parameter (``field``).

One place for every entry point: strings (``str`` only, no lone
surrogates; a ``str`` subclass is copied into an exact ``str`` without
calling any method it overrides), integers (``int``, not ``bool``, within
the core's range), lists and mappings of strings, the generated records
built from keyword options (unknown or missing keywords, nested ``retry``),
the synchronous ``timeout=``, and host objects (a store, an HTTP client, a
clock) that lack the methods freshtoken calls. Messages name the parameter
and the type given, never a value: values may be secrets.

What the values mean (a leeway that is negative, an empty client id, an
insecure endpoint) is the core's to judge; it raises ``ConfigError`` too.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from ._errors import ConfigError

__all__ = ["text", "optional_text", "key", "integer", "text_list", "text_map", "record", "fields_of", "timeout",
           "store", "http", "clock", "type_name"]

I64 = (-(1 << 63), 1 << 63)
I32 = (-(1 << 31), 1 << 31)

# Integer fields of the generated records that are narrower than i64 in the
# FFI (every other ``int`` field is an i64). test_arguments.py checks each
# record's int fields against the generated converters.
_NARROW = {("RetryOptions", "max_attempts"): I32}


def type_name(value: Any) -> str:
    """``value``'s type as a message may show it (never the value)."""
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return utf8_safe(name)


def utf8_safe(message: str) -> str:
    """``message`` as UTF-8 can carry it: lone surrogates (from ``os.fsdecode``
    of a non-UTF-8 path, say) written as ``\\udcff``."""
    if type(message) is not str:
        message = str.__str__(message)
    if str.isascii(message):
        return message
    return str.encode(message, "utf-8", "backslashreplace").decode("utf-8")


def _error(field: str, message: str) -> ConfigError:
    return ConfigError(message, field=field)


def text(value: Any, field: str) -> str:
    """``value`` as an exact ``str`` UTF-8 can carry, else ``ConfigError(field)``."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise _error(field, f"{field} must be a str, not {type_name(value)}")
        # str.__str__ copies a subclass's characters into an exact str; it
        # calls none of the subclass's methods (str(), format, slicing would).
        value = str.__str__(value)
    if not str.isascii(value):
        try:
            str.encode(value, "utf-8")
        except UnicodeEncodeError:
            raise _error(field, f"{field} must be valid Unicode (it holds a lone surrogate)") from None
    return value


def optional_text(value: Any, field: str) -> Optional[str]:
    """None, or :func:`text`."""
    return None if value is None else text(value, field)


def key(value: Any) -> str:
    """A session key: a non-empty :func:`text`."""
    value = text(value, "key")
    if not value:
        raise _error("key", "key must be a non-empty string")
    return value


def integer(value: Any, field: str, bounds: Tuple[int, int] = I64) -> int:
    """``value`` as an exact ``int`` within ``bounds`` (not a ``bool``, not a
    ``float``), else ``ConfigError(field)``."""
    if isinstance(value, bool):
        raise _error(field, f"{field} must be an int, not bool")
    if type(value) is not int:
        try:
            value = operator.index(value)  # an exact int (Python 3.10+ copies subclasses)
        except Exception:  # noqa: BLE001 - float, str, an __index__ that raises, ...
            raise _error(field, f"{field} must be an int, not {type_name(value)}") from None
        value = int.__index__(value)  # Python 3.9's operator.index may return a subclass
    if not bounds[0] <= value < bounds[1]:
        bits = (bounds[1] - 1).bit_length() + 1
        raise _error(field, f"{field} is out of range for a signed {bits}-bit integer")
    return value


def text_list(value: Any, field: str) -> List[str]:
    """A list of :func:`text` from any iterable of strings (not one string)."""
    if isinstance(value, str):
        # A bare string would be split into characters (JavaScript: ConfigError too).
        raise _error(field, f"{field} must be a list of strings, not one string")
    if isinstance(value, (bytes, bytearray, memoryview)) or not isinstance(value, Iterable):
        raise _error(field, f"{field} must be a list of strings, not {type_name(value)}")
    return [text(item, field) for item in value]


def text_map(value: Any, field: str) -> Dict[str, str]:
    """A new dict of :func:`text` names and values from any ``Mapping``,
    read once. Errors name ``field`` and the name at fault, never a value."""
    if not isinstance(value, Mapping):
        raise _error(field, f"{field} must be a mapping of str to str, not {type_name(value)}")
    try:
        items = list(value.items())
    except Exception as e:  # noqa: BLE001 - a Mapping whose items() raises
        raise _error(field, f"{field} could not be read ({type_name(e)})") from None
    checked: Dict[str, str] = {}
    for name, item in items:
        if not isinstance(name, str):
            raise _error(field, f"{field} names must be str, not {type_name(name)}")
        name = text(name, field)
        if not isinstance(item, str):
            raise _error(field, f"{field}[{utf8_safe(repr(name))}] must be a str, not {type_name(item)}")
        if name in checked:  # str subclasses that hashed apart but are one name
            raise _error(field, f"{field} names {utf8_safe(repr(name))} more than once")
        checked[name] = text(item, field)
    return checked


# --- records built from keyword options ---------------------------------------


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> Dict[str, Tuple[str, bool]]:
    """A generated record's fields: name -> (annotation text, required)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: (str(p.annotation), p.default is inspect.Parameter.empty) for p in parameters}


def fields_of(instance: Any) -> Dict[str, Any]:
    """A generated record's field values, by name."""
    return {name: getattr(instance, name) for name in _fields(type(instance))}


def record(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """``cls(**values)`` for a generated record, every field checked against
    its type (an unknown or missing keyword is a ``ConfigError`` too). Field
    names in errors are ``prefix`` + name (``"retry.max_attempts"``)."""
    fields = _fields(cls)
    for name in values:
        if name not in fields:
            raise _error(prefix + str(name), f"unknown option `{prefix}{name}`")
    checked = {}
    for name, (annotation, required) in fields.items():
        if name in values:
            checked[name] = _field(cls, name, annotation, values[name], prefix + name)
        elif required:
            raise _error(prefix + name, f"`{prefix}{name}` is required")
    return cls(**checked)


def nested(cls: type, value: Any, field: str) -> Any:
    """A record option given as a dict of its fields or as the record itself."""
    if isinstance(value, cls):
        return record(cls, fields_of(value), field + ".")
    if isinstance(value, Mapping):
        return record(cls, value, field + ".")
    raise _error(field, f"{field} must be a dict or {cls.__name__}, not {type_name(value)}")


def _field(cls: type, name: str, annotation: str, value: Any, field: str) -> Any:
    optional = annotation.startswith("typing.Optional[")
    if optional:
        if value is None:
            return None
        annotation = annotation[len("typing.Optional["):-1]
    if annotation == "str":
        return text(value, field)
    if annotation == "int":
        return integer(value, field, _NARROW.get((cls.__name__, name), I64))
    if annotation == "bool":
        if not isinstance(value, bool):
            raise _error(field, f"{field} must be a bool, not {type_name(value)}")
        return value
    if annotation == "typing.List[str]":
        return text_list(value, field)
    if annotation == "dict[str, str]":
        return text_map(value, field)
    target = _RECORDS.get(annotation)
    if target is not None:
        return nested(target, value, field)
    return value  # an interface (EventListener): its converter checks it


def _records() -> Dict[str, type]:
    from ._ffi.freshtoken import RetryOptions

    return {"RetryOptions": RetryOptions}


_RECORDS = _records()


# --- the synchronous client's timeout= --------------------------------------------


def timeout(value: Any) -> Optional[float]:
    """``timeout=`` in seconds: None (no limit) or a finite number ≥ 0. One
    beyond what the platform's locks can wait is no limit either."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error("timeout", f"timeout must be a number of seconds or None, not {type_name(value)}")
    try:
        # float's and int's own conversions: a subclass's __float__ is never
        # called (it could raise, or give another number than its value).
        seconds = float.__float__(value) if isinstance(value, float) else int.__float__(value)
    except OverflowError:
        # An int too big for a float: beyond any lock's wait, so no limit, unless negative.
        if int.__lt__(value, 0):
            raise _error("timeout", "timeout must not be negative") from None
        return None
    if math.isnan(seconds) or math.isinf(seconds):
        raise _error("timeout", "timeout must be a finite number of seconds (None: no limit)")
    if seconds < 0:
        raise _error("timeout", "timeout must not be negative")
    return None if seconds > threading.TIMEOUT_MAX else seconds


# --- host objects -------------------------------------------------------------------


def _has(value: Any, name: str) -> bool:
    try:
        return callable(getattr(value, name, None))
    except Exception:  # noqa: BLE001 - a property that raises: not a method
        return False


def _require(value: Any, field: str, kind: str, names: Iterable[str]) -> None:
    if value is None:
        raise _error(field, f"{field} must be {kind}, not None")
    for name in names:
        if not _has(value, name):
            raise _error(field, f"{field} must be {kind}: {type_name(value)} has no {name}() method")


#: Store members the core calls synchronously: they must answer at once.
SYNC_STORE_MEMBERS = ("supports_lease", "supports_versions")


def is_async(member: Any) -> bool:
    """Whether a (possibly wrapped) callable is an ``async def``."""
    try:
        return inspect.iscoroutinefunction(inspect.unwrap(member))
    except Exception:  # noqa: BLE001 - an odd __wrapped__ chain
        return False


def store(value: Any, field: str = "store") -> Any:
    """A store that has ``load`` and ``save``, and whose ``supports_lease`` /
    ``supports_versions`` (if any) are plain methods: the core asks them
    synchronously, and an ``async def`` would answer with a coroutine."""
    from ._ffi.freshtoken import TokenStoreImpl

    if isinstance(value, TokenStoreImpl):  # implemented in Rust (EncryptedStore)
        return value
    _require(value, field, "a TokenStore", ("load", "save"))
    for name in SYNC_STORE_MEMBERS:
        try:
            member = getattr(value, name, None)
        except Exception:  # noqa: BLE001
            member = None
        if member is not None and is_async(member):
            raise _error(field, f"the store's {name}() must be a plain method returning bool, not async def "
                                "(the core asks it synchronously)")
    return value


def http(value: Any) -> Any:
    """An HTTP client with a ``send`` method (None: the default client)."""
    if value is not None:
        _require(value, "http", "an HttpClient", ("send",))
    return value


def clock(value: Any) -> Any:
    """A clock with a ``now_ms`` method (None: the system clock), a plain
    one: the core reads it synchronously, so an ``async def`` would answer
    with a coroutine (never awaited), and the clock would be ignored."""
    if value is not None:
        _require(value, "clock", "a Clock", ("now_ms",))
        if is_async(getattr(value, "now_ms")):
            raise _error("clock", "the clock's now_ms() must be a plain method returning int ms, not async def "
                                  "(the core reads it synchronously)")
    return value
