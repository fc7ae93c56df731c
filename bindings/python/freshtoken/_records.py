"""The generated records compare only with their own type.

uniffi's generated ``__eq__`` reads the other object's fields without
checking its type: ``info == None`` or ``header in ["a"]`` raised
``AttributeError``. On import each generated class's own ``__eq__`` (and
that of the variants nested in a generated enum) answers
``NotImplemented`` for another type, so Python falls back to identity:
``False`` for ``==``, ``True`` for ``!=``.
"""

from __future__ import annotations

from typing import Any, Callable

from ._ffi import freshtoken as _generated

__all__: list = []


def _own_type_only(eq: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if type(other) is not type(self):
            return NotImplemented
        return eq(self, other)

    __eq__.__doc__ = eq.__doc__
    return __eq__


def _generated_classes() -> list:
    found = []
    for value in list(vars(_generated).values()):
        if isinstance(value, type) and value.__module__ == _generated.__name__:
            found.append(value)
            found.extend(v for v in vars(value).values()
                         if isinstance(v, type) and v.__module__ == _generated.__name__)
    return found


for _cls in _generated_classes():
    _eq = vars(_cls).get("__eq__")
    if _eq is not None:
        _cls.__eq__ = _own_type_only(_eq)
