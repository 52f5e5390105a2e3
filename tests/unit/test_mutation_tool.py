"""scripts/mutation.py's arithmetic: scores, the margin of a sampled score, module selection."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_tool", ROOT / "scripts" / "mutation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_tool"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def result(tool: ModuleType, counts: dict[str, int], sampled_from: int | None = None) -> Any:
    return tool.ModuleResult("m", [], [], counts=counts, sampled_from=sampled_from)


def test_scores_count_timeouts_as_detected_and_skip_unchecked(tool: ModuleType) -> None:
    r = result(tool, {"killed": 80, "timeout": 10, "survived": 5, "no tests": 5, "not checked": 900})
    assert (r.total, r.detected, r.tested) == (100, 90, 95)
    assert r.score() == pytest.approx(0.90)
    assert r.score(of_tested=True) == pytest.approx(90 / 95)
    assert r.margin() is None  # not a sample
    assert tool._score(r) == "90.0%"


def test_a_sampled_score_has_a_95_percent_margin(tool: ModuleType) -> None:
    r = result(tool, {"killed": 180, "survived": 20, "not checked": 800}, sampled_from=1000)
    # 1.96 * sqrt(0.9 * 0.1 / 200 * (800 / 999))
    assert r.margin() == pytest.approx(0.03721, abs=1e-4)
    assert tool._score(r) == "90.0% ± 3.7 (sample of 200 of 1000)"
    whole = result(tool, {"killed": 9, "survived": 1}, sampled_from=10)
    assert whole.margin() is None  # the sample was everything


def test_modules_are_chosen_by_name_prefix_or_file(tool: ModuleType) -> None:
    modules = {
        "hub.storage": {"source": ["devhost/sqlite_hub/storage.py"]},
        "hub.leases": {"source": ["devhost/sqlite_hub/leases.py"]},
        "entities": {"source": ["entities/*.py"]},
    }
    assert tool.select(modules, []) == list(modules)
    assert tool.select(modules, ["hub"]) == ["hub.storage", "hub.leases"]
    assert tool.select(modules, ["./entities/storage.py", "entities"]) == ["entities"]
    with pytest.raises(SystemExit, match="no module 'hu'"):
        tool.select(modules, ["hu"])


def test_every_configured_module_names_existing_files_and_tests(tool: ModuleType) -> None:
    _, modules = tool.load_config()
    for name, module in modules.items():
        for pattern in module["source"]:
            assert list(ROOT.glob(pattern)), f"{name}: {pattern} matches nothing"
        for test_path in module["tests"]:
            assert (ROOT / test_path).exists(), f"{name}: {test_path} does not exist"


@pytest.mark.parametrize(
    ("before", "after", "equivalent"),
    [
        ('conn.execute("PRAGMA user_version")', 'conn.execute("PRAGMA USER_VERSION")', True),
        ('sql = "SELECT * FROM entities"', 'sql = "select * from entities"', True),
        ('if row["locked_by"] is None:', 'if row["LOCKED_BY"] is None:', True),
        ('text = raw.decode("utf-8")', 'text = raw.decode("UTF-8")', True),
        # case matters in messages, header values, dictionary keys of our own
        ('raise ValueError("the key set URL")', 'raise ValueError("THE KEY SET URL")', False),
        ('entry["attempt"] = 1', 'entry["ATTEMPT"] = 1', False),
        ('log.info("dropping %s", row["id"])', 'log.info("DROPPING %S", row["id"])', False),
        # not a case change at all
        ('conn.execute("PRAGMA user_version")', 'conn.execute("XXPRAGMA user_versionXX")', False),
        ("x = a + 1", "x = a + 2", False),
    ],
)
def test_only_case_changes_where_case_is_ignored_count_as_equivalent(
    tool: ModuleType, before: str, after: str, equivalent: bool
) -> None:
    survivor = tool.Survivor("m", "f.py", 1, [before], [after])
    assert (tool.equivalence(survivor) is not None) is equivalent


def test_equivalent_survivors_leave_the_distinct_score(tool: ModuleType) -> None:
    sql = tool.Survivor("a", "f.py", 1, ['x("SELECT 1")'], ['x("select 1")'])
    real = tool.Survivor("b", "f.py", 2, ["n = 1"], ["n = 2"])
    r = result(tool, {"killed": 8, "survived": 2})
    r.survivors = [sql, real]
    assert r.equivalent == 1
    assert r.score() == pytest.approx(0.8) and r.score(of_distinct=True) == pytest.approx(8 / 9)
