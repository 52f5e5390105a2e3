"""devhost's pure parts: route templates, backend addresses, host.json and local settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devhost.connection import BackendAddressError, parse_backend_address
from devhost.host import apply_local_settings, host_settings
from devhost.logs import escape, redact_query
from devhost.routing import compile_route


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("threads", "threads", {}),
        ("threads/{thread_id}", "threads/abc", {"thread_id": "abc"}),
        ("threads/{thread_id}", "THREADS/abc", {"thread_id": "abc"}),
        (
            "threads/{thread_id}/messages/{message_id}",
            "threads/a/messages/b",
            {"thread_id": "a", "message_id": "b"},
        ),
        ("items/{id:int}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/x", None),
        ("files/{name?}", "files", {}),
        ("files/{name?}", "files/a", {"name": "a"}),
        ("static/{*rest}", "static/a/b/c", {"rest": "a/b/c"}),
        ("threads/{thread_id}", "threads/a/extra", None),
        ("threads", "threadsx", None),
    ],
)
def test_route_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert compile_route(template).match(path) == expected


def test_literal_segments_rank_routes() -> None:
    assert compile_route("threads/{id}/messages").literal_segments == 2
    assert compile_route("{a}/{b}").literal_segments == 0


def test_emulator_connection_string() -> None:
    conn = parse_backend_address("Endpoint=http://localhost:8080;TaskHub=default;Authentication=None")
    assert (conn.address, conn.task_hub, conn.secure) == ("localhost:8080", "default", False)
    assert conn.metadata() == (("taskhub", "default"),)
    assert conn.channel_credentials() is None


def test_azure_connection_string() -> None:
    conn = parse_backend_address(
        "Endpoint=https://s.westus2.durabletask.io;TaskHub=hub;Authentication=ManagedIdentity;ClientID=abc"
    )
    assert (conn.address, conn.secure, conn.authentication, conn.client_id) == (
        "s.westus2.durabletask.io:443",
        True,
        "managedidentity",
        "abc",
    )


@pytest.mark.parametrize(
    "spec",
    [
        "nonsense",
        "Endpoint=ftp://x;TaskHub=h",
        "TaskHub=h",
        "Endpoint=http://x:1;Authentication=Magic",
        "Endpoint=http://x:1;Authentication=DefaultAzure",
        "Endpoint",
    ],
)
def test_bad_backend_addresses_are_explained(spec: str) -> None:
    with pytest.raises(BackendAddressError):
        parse_backend_address(spec)


def test_host_json_prefix_and_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKHUB_NAME", "hub1")
    (tmp_path / "host.json").write_text(
        json.dumps(
            {"extensions": {"http": {"routePrefix": "v2"}, "durableTask": {"hubName": "%TASKHUB_NAME%"}}}
        )
    )
    assert host_settings(tmp_path) == ("v2", "hub1")
    assert host_settings(tmp_path / "missing") == ("api", "default")


def test_local_settings_do_not_override_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DA_TEST_KEEP", "env")
    monkeypatch.delenv("DA_TEST_NEW", raising=False)
    (tmp_path / "local.settings.json").write_text(
        json.dumps({"Values": {"DA_TEST_KEEP": "file", "DA_TEST_NEW": "file"}})
    )
    try:
        assert apply_local_settings(tmp_path) == ["DA_TEST_NEW"]
        assert os.environ["DA_TEST_KEEP"] == "env"
        assert os.environ["DA_TEST_NEW"] == "file"
    finally:
        os.environ.pop("DA_TEST_NEW", None)


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("GET /a\nb", "GET /a\\nb"),
        ("x\r\ny", "x\\r\\ny"),
        ("tab\there", "tab\\there"),
        ("esc\x1b[31m", "esc\\x1b[31m"),
        ("nel\x85del\x7f", "nel\\x85del\\x7f"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("plain ünïcode", "plain ünïcode"),
    ],
)
def test_log_escape_keeps_one_record_on_one_line(raw: str, logged: str) -> None:
    assert escape(raw) == logged
    assert escape(escape(raw)) == logged  # escaping twice changes nothing


def test_the_management_key_never_reaches_the_log() -> None:
    assert redact_query("code=s3cret&top=2") == "code=***&top=2"
    assert redact_query("Code=a&CODE=b") == "Code=***&CODE=***"
    assert redact_query("top=2&q=%0A") == "top=2&q=%0A"  # untouched without a secret
    assert "s3cret" not in redact_query("x=1&code=s3cret%0A")
