"""No key, password or secret-bearing connection string anywhere in the infrastructure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, ROOT, bicep_files, load

INFRA_FILES = sorted(p for p in INFRA.rglob("*") if p.is_file())
SCANNED = [*INFRA_FILES, ROOT / "azure.yaml", ROOT / "host.json"]

FORBIDDEN = [
    (r"\blist\w*Keys?\s*\(", "listKeys()/listAdminKeys() and friends read keys"),
    (r"\.list\w*\(", "list*() functions return secrets (keys, SAS, connection strings)"),
    (r"listAccountSas|listServiceSas|listConnectionStrings|listCredentials", "secret-returning functions"),
    (r"AccountKey\s*=", "storage connection string with a key"),
    (r"SharedAccessSignature|SharedAccessKey", "SAS or shared access key"),
    (r"InstrumentationKey\s*=", "hand-built key-style App Insights connection string"),
    (r"(?i)\bapi[-_]?key\b", "API keys"),
    (r"(?i)\bclientSecret\b|\bclient_secret\b|\bpassword\b", "secrets"),
]


def _ids(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", SCANNED, ids=_ids)
def test_no_secret_patterns(path: Path) -> None:
    text = path.read_text()
    hits = [why for pattern, why in FORBIDDEN if re.search(pattern, text)]
    assert hits == []


def test_scanner_catches_secrets() -> None:
    samples = [
        "value: storage.listKeys().keys[0].value",
        "x: 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc'",
        "AZURE_OPENAI_API_KEY: account.listKeys().key1",
    ]
    for sample in samples:
        assert any(re.search(pattern, sample) for pattern, _ in FORBIDDEN), sample


@pytest.mark.parametrize("path", bicep_files(), ids=_ids)
def test_no_secure_params_or_outputs(path: Path) -> None:
    bicep = load(path)
    assert [n for n, d in bicep.output_decorators.items() if "@secure" in d] == []
    assert [n for n, d in bicep.param_decorators.items() if "@secure" in d] == []
    assert not re.search(r"@secure\s*\(", bicep.text)


def test_no_keys_in_outputs() -> None:
    for path in bicep_files():
        for name in load(path).outputs:
            assert not re.search(r"(?i)key|secret|password|sas", name), f"{path.name}: output {name}"
