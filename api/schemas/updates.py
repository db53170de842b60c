"""Update schemas derived from the specs they change, so a field added to a spec can be
PATCHed from the day it exists. tests/test_update_schemas.py holds each to its spec."""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, create_model


def update_of(
    spec: type[BaseModel],
    *,
    name: str,
    doc: str,
    not_updatable: Collection[str] = (),
    base: type[BaseModel] | None = None,
) -> type[BaseModel]:
    """Every field of `spec` but `not_updatable`, optional, with its own constraints; fields
    `base` declares are its own; other keys are refused. A route merges the fields sent
    (`model_dump(exclude_unset=True)`) into the current spec and validates the whole, so the
    rules across fields hold too."""
    fields: dict[str, Any] = {}
    declared = base.model_fields if base is not None else {}
    for field_name, field in spec.model_fields.items():
        if field_name in not_updatable or field_name in declared:
            continue
        optional = copy.copy(field)
        optional.default = None
        optional.default_factory = None
        fields[field_name] = (Optional[field.annotation], optional)  # noqa: UP045
    if base is None:
        return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)
    return create_model(name, __base__=base, __doc__=doc, **fields)
