"""Each update schema takes every field of the spec it changes (but those listed as not
updatable), with the same types and bounds, so a field added to a spec can be PATCHed."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from api.schemas.agents import AGENT_NOT_UPDATABLE, AgentUpdate
from api.schemas.integrations import INTEGRATION_NOT_UPDATABLE, SECRET_FIELDS, IntegrationUpdate
from api.schemas.knowledge import KNOWLEDGE_SET_NOT_UPDATABLE, KnowledgeSetUpdate
from api.schemas.workforces import WORKFORCE_NOT_UPDATABLE, WorkforceUpdate
from baton.domain.agents import AgentSpec
from baton.domain.integrations import IntegrationSpec
from baton.domain.knowledge import KnowledgeSetSpec
from baton.domain.workforces import WorkforceSpec

# (update schema, its spec, the spec's fields it leaves out on purpose, its own fields)
UPDATES = [
    (AgentUpdate, AgentSpec, AGENT_NOT_UPDATABLE, set()),
    (KnowledgeSetUpdate, KnowledgeSetSpec, KNOWLEDGE_SET_NOT_UPDATABLE, set()),
    (IntegrationUpdate, IntegrationSpec, INTEGRATION_NOT_UPDATABLE, set(SECRET_FIELDS)),
    (WorkforceUpdate, WorkforceSpec, WORKFORCE_NOT_UPDATABLE, set()),
]


@pytest.mark.parametrize(("update", "spec", "left_out", "own"), UPDATES)
def test_an_update_schema_has_every_field_of_its_spec(
    update: type[BaseModel], spec: type[BaseModel], left_out: frozenset[str], own: set[str]
):
    assert left_out <= set(spec.model_fields), "a field listed as not updatable is not in the spec"
    assert set(update.model_fields) == set(spec.model_fields) - left_out | own
    for name in set(spec.model_fields) - left_out:
        field, original = update.model_fields[name], spec.model_fields[name]
        assert field.annotation == original.annotation | None, name
        assert field.metadata == original.metadata, name
        assert not field.is_required() and field.default is None, name


@pytest.mark.parametrize(("update", "spec", "left_out", "own"), UPDATES)
def test_an_update_schema_refuses_fields_its_spec_does_not_have(
    update: type[BaseModel], spec: type[BaseModel], left_out: frozenset[str], own: set[str]
):
    with pytest.raises(ValidationError, match="extra"):
        update.model_validate({"no_such_field": 1})
    assert update.model_validate({}).model_dump(exclude_unset=True) == {}


def test_an_agent_update_keeps_the_specs_bounds():
    knowledge = {"knowledge": [{"set_id": "s", "mode": "prompt"}]}
    assert AgentUpdate.model_validate(knowledge).model_dump(exclude_unset=True) == knowledge
    for bad in ({"name": ""}, {"temperature": 2.5}, {"knowledge": [{"set_id": "s"}] * 21}):
        with pytest.raises(ValidationError):
            AgentUpdate.model_validate(bad)
