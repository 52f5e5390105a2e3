"""Parses where an external Durable Task backend is: `host:port` or a DTS connection string.

Connection strings use the form the app uses in Azure, e.g.
`Endpoint=http://localhost:8080;TaskHub=default;Authentication=None` for the Durable Task
Scheduler emulator, or `Endpoint=https://NAME.REGION.durabletask.io;TaskHub=HUB;
Authentication=DefaultAzure` for Azure, where a bearer token from azure-identity is added
to every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import grpc

SUPPORTED_AUTH = ("none", "defaultazure", "managedidentity", "workloadidentity", "azurecli")
DTS_SCOPE = "https://durabletask.io/.default"


class BackendAddressError(ValueError):
    """The --backend value is neither a known kind, host:port, nor a connection string."""


@dataclass(frozen=True)
class SchedulerConnection:
    address: str
    task_hub: str | None = None
    secure: bool = False
    authentication: str = "none"
    client_id: str | None = None

    def describe(self) -> str:
        hub = f", task hub {self.task_hub}" if self.task_hub else ""
        return f"{'https' if self.secure else 'http'}://{self.address}{hub}, auth {self.authentication}"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("taskhub", self.task_hub),) if self.task_hub else ()

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        if not self.secure:
            return None
        tls = grpc.ssl_channel_credentials()
        if self.authentication == "none":
            return tls
        token_plugin = grpc.metadata_call_credentials(_TokenAuth(self._token_provider()))
        return grpc.composite_channel_credentials(tls, token_plugin)

    def _token_provider(self) -> Callable[[], str]:
        from azure import identity

        credential: Any
        if self.authentication == "managedidentity":
            credential = identity.ManagedIdentityCredential(client_id=self.client_id)
        elif self.authentication == "workloadidentity":
            credential = identity.WorkloadIdentityCredential()
        elif self.authentication == "azurecli":
            credential = identity.AzureCliCredential()
        else:
            credential = identity.DefaultAzureCredential()
        return identity.get_bearer_token_provider(credential, DTS_SCOPE)


class _TokenAuth(grpc.AuthMetadataPlugin):  # type: ignore[misc]
    def __init__(self, provider: Callable[[], str]) -> None:
        self._provider = provider

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        try:
            callback((("authorization", f"Bearer {self._provider()}"),), None)
        except Exception as error:  # noqa: BLE001 - gRPC must get the failure, not an exception
            callback((), error)


def parse_connection_string(text: str) -> SchedulerConnection:
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise BackendAddressError(f"connection string part {part!r} is not Key=Value")
        fields[key.strip().lower()] = value.strip()
    endpoint = fields.get("endpoint")
    if not endpoint:
        raise BackendAddressError("the connection string needs Endpoint=http(s)://host:port")
    url = urlparse(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise BackendAddressError(f"Endpoint={endpoint!r} must be an http:// or https:// URL")
    auth = fields.get("authentication", "none").lower()
    if auth not in SUPPORTED_AUTH:
        raise BackendAddressError(
            f"Authentication={auth!r} is not supported; use one of {', '.join(SUPPORTED_AUTH)}"
        )
    secure = url.scheme == "https"
    if not secure and auth != "none":
        raise BackendAddressError("token authentication needs an https:// Endpoint")
    port = url.port or (443 if secure else 80)
    return SchedulerConnection(
        address=f"{url.hostname}:{port}",
        task_hub=fields.get("taskhub"),
        secure=secure,
        authentication=auth,
        client_id=fields.get("clientid"),
    )


def parse_backend_address(spec: str) -> SchedulerConnection:
    if "=" in spec:
        return parse_connection_string(spec)
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BackendAddressError(
            f"--backend {spec!r} is not 'sqlite', 'memory', host:port, "
            "or an Endpoint=...;TaskHub=... connection string"
        )
    return SchedulerConnection(address=f"{host}:{port}")
