"""Every problem `type` the app can return points at an anchor the README really has."""

from __future__ import annotations

from pathlib import Path

from agent import errors
from agent.errors import DurableAgentError
from http_api.problems import PROBLEM_TYPE_BASE

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def every_code() -> set[str]:
    import agent.auth
    import agent.retry  # noqa: F401

    codes = {"internal"}  # handle_errors' answer to an unexpected exception
    pending: list[type[DurableAgentError]] = [errors.DurableAgentError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


def test_every_error_code_has_its_anchor_in_the_readme() -> None:
    assert PROBLEM_TYPE_BASE.endswith("README.md#errors")
    missing = sorted(code for code in every_code() if f'<a id="errors-{code}"></a>' not in README)
    assert missing == [], f"README.md's Errors section lacks anchors for {missing}"


def test_the_errors_section_exists() -> None:
    assert "\n### Errors\n" in README
