"""How Baton talks to Temporal: the client factory, the data converter, and the search
attributes that make every run findable in the Temporal UI."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    ExternalStorage,
)
from temporalio.service import TLSConfig

# Re-exported: the API and the triggers set these on the runs they start.
from baton.search_attributes import BATON_AGENT as BATON_AGENT
from baton.search_attributes import BATON_KIND as BATON_KIND
from baton.search_attributes import BATON_PROJECT as BATON_PROJECT
from baton.search_attributes import BATON_STATUS as BATON_STATUS
from baton.search_attributes import BATON_USER_GROUP as BATON_USER_GROUP
from baton.search_attributes import BATON_WORKFORCE as BATON_WORKFORCE
from baton.search_attributes import SEARCH_ATTRIBUTES
from baton.search_attributes import run_search_attributes as run_search_attributes
from baton.settings import Settings

if TYPE_CHECKING:
    from baton.payload_codec import PayloadKeys


# The dev server's SQLite with WAL runs about three times the activities per second of its
# default journal on a small machine.
DEV_SERVER_SQLITE_ARGS = (
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
)


def dev_server_search_attribute_args() -> list[str]:
    """`temporal server start-dev` flags that register Baton's search attributes at launch."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args


def _tls_config(settings: Settings) -> TLSConfig | bool:
    if settings.temporal_tls_cert_path is None and settings.temporal_tls_ca_path is None:
        # Temporal Cloud with an API key needs TLS even without client certificates.
        return settings.temporal_api_key is not None
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca_path.read_bytes()
        if settings.temporal_tls_ca_path
        else None,
        client_cert=settings.temporal_tls_cert_path.read_bytes()
        if settings.temporal_tls_cert_path
        else None,
        client_private_key=settings.temporal_tls_key_path.read_bytes()
        if settings.temporal_tls_key_path
        else None,
    )


def payload_keys(settings: Settings) -> PayloadKeys:
    """The keys of Temporal payloads: sealed under the secret key, opened by it or a former one."""
    # Imported here: workflow code imports this module for the search attribute keys, and
    # workflows must not import the cipher or the database layer.
    from baton.payload_codec import PayloadKeys

    return PayloadKeys(settings.require_secret_key(), settings.previous_secret_key_values())


def data_converter(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
) -> DataConverter:
    """Pydantic payloads (unknown fields ignored on decode: baton/payload_converter.py) and
    failures, encrypted (see baton/payload_codec.py); with a database, payloads over 64 KB
    are stored there and history keeps a reference (a claim check), so long transcripts and
    big outputs stay small. The SDK encrypts before it
    stores, so the stored blobs are ciphertext too."""
    from baton.payload_codec import EncryptionCodec
    from baton.payload_converter import BatonPayloadConverter

    codec = EncryptionCodec(payload_keys(settings))
    converter = DataConverter(
        payload_converter_class=BatonPayloadConverter,
        payload_codec=codec,
        # A failure's message and stack trace (a step's error may quote what it read) go into
        # an encoded payload as well, instead of staying in clear beside it.
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
    if session_factory is None:
        return converter
    from baton.db.payload_store import PAYLOAD_SIZE_THRESHOLD, DatabasePayloadStore

    return dataclasses.replace(
        converter,
        external_storage=ExternalStorage(
            drivers=[DatabasePayloadStore(session_factory)],
            payload_size_threshold=PAYLOAD_SIZE_THRESHOLD,
        ),
    )


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    session_factory: async_sessionmaker[AsyncSession] | None = None,
) -> Client:
    """A lazy client connects on first use, so the API can start before Temporal is up."""
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key.get_secret_value() if api_key else None,
        tls=_tls_config(settings),
        data_converter=data_converter(settings, session_factory),
        lazy=lazy,
    )


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Registers any missing Baton search attribute (a cluster that was not started by
    `baton up`); one that exists is left alone."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {
        key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        for key in SEARCH_ATTRIBUTES
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
