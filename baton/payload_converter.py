"""How Baton's payloads become JSON and back: pydantic, as temporalio's own converter does,
except that decoding ignores fields it does not know.

A definition (an agent's or tool's spec, a workforce) forbids unknown fields when it is saved,
so a typo is refused with a clear 422. The same models travel inside Temporal payloads, where
that rule would turn a field a later version dropped into a run that can never decode its
input again. Rules that tighten belong to saving, not to decoding: here every model takes
`extra="ignore"` for the one validation, whatever its own config says."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


@functools.lru_cache(maxsize=1024)
def _adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


class TolerantJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        hint: Any = type_hint if type_hint is not None else Any
        try:
            adapter = _adapter(hint)
        except TypeError:  # an unhashable hint: not cached
            adapter = TypeAdapter(hint)
        return adapter.validate_json(payload.data, extra="ignore")


class BatonPayloadConverter(CompositePayloadConverter):
    """temporalio's default converters, with JSON through `TolerantJSONPayloadConverter`."""

    def __init__(self) -> None:
        tolerant = TolerantJSONPayloadConverter()
        super().__init__(
            *(
                tolerant if isinstance(converter, JSONPlainPayloadConverter) else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )
