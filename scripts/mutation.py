"""Mutation testing with mutmut 3, one module at a time, each with its own tests.

Run through `scripts/mutation [MODULE...]` (see --help). Modules and their tests are in
mutation.toml. For each module this:

1. lays a snapshot of the code in .devhost/mutation/MODULE/ (the committed HEAD by default,
   or the working tree with --worktree), so edits in progress elsewhere in the tree
   neither break the run nor get measured by accident;
2. appends a [tool.mutmut] section to that snapshot's pyproject.toml: mutate the module's
   files only, run its tests only, one forked worker process per mutant;
3. runs `mutmut run` there (niced), which records which tests call which function and
   then runs, for each mutant, just those tests; with --sample N (or a module's `sample`
   in mutation.toml) only N mutants drawn at random (seeded), for modules whose tests are
   too slow to run every mutant: the score is then an estimate, reported with its margin;
4. reads the results and prints the score and every surviving mutant (file:line, the
   line before and after), and writes them to .devhost/mutation/report.md and .json.

Browse one module's mutants afterwards with `cd .devhost/mutation/MODULE && mutmut browse`
(or `mutmut show NAME`). Not part of CI: a full run takes long; run it before a release.
"""

# Runs git, nice and mutmut with fixed arguments (S603/S607 are about untrusted input).
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import ast
import fnmatch
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "mutation.toml"
WORK = ROOT / ".devhost" / "mutation"
MUTMUT = Path(sys.executable).parent / "mutmut"

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code, restated so the report
# reads without importing mutmut).
STATUS_BY_EXIT_CODE = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    37: "caught by type check",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass
class Survivor:
    name: str
    file: str
    line: int | None
    before: list[str]
    after: list[str]


# Upper-case keywords mark a string as SQL (this code writes SQL that way); SQLite reads
# keywords and identifiers in any case.
_SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|PRAGMA|FROM|WHERE|VALUES|GROUP BY|ORDER BY)\b")
_CODECS = {"utf-8", "utf8", "ascii"}
# A quoted string with what comes before it (to see a sqlite3.Row key: row["name"]).
_QUOTED = re.compile(r"""(\w*\[)?("[^"]*"|'[^']*')""")
_ROW_NAMES = {"row[", "cand[", "req[", "owner[", "r["}


def equivalence(survivor: Survivor) -> str | None:
    """Why a surviving mutant cannot change behaviour, for the one class this is certain
    of: a string whose letter case was changed where case is ignored (SQL text, a
    sqlite3.Row key, a codec name). None for every other survivor."""
    if len(survivor.before) != len(survivor.after) or not survivor.before:
        return None
    for before, after in zip(survivor.before, survivor.after, strict=True):
        if before == after:
            continue
        if before.lower() != after.lower():
            return None
        old, new = _QUOTED.findall(before), _QUOTED.findall(after)
        if len(old) != len(new):
            return None
        differing = [
            (prefix, text) for (prefix, text), (_, other) in zip(old, new, strict=True) if text != other
        ]
        if not differing:
            return None  # the case changed outside a string
        for prefix, text in differing:
            inner = text[1:-1]
            if not (_SQL.search(inner) or inner.lower() in _CODECS or prefix in _ROW_NAMES):
                return None
    return "letter case only, where case is ignored (SQL text, sqlite3.Row keys, codec names)"


@dataclass
class ModuleResult:
    module: str
    source: list[str]
    tests: list[str]
    status: str = "ok"  # or what went wrong
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[Survivor] = field(default_factory=list)
    untested: list[Survivor] = field(default_factory=list)
    seconds: float = 0.0
    #: how many mutants the module has when only a sample of them was run
    sampled_from: int | None = None

    @property
    def total(self) -> int:
        return sum(n for status, n in self.counts.items() if status not in ("skipped", "not checked"))

    @property
    def detected(self) -> int:
        return sum(n for status, n in self.counts.items() if status in DETECTED)

    @property
    def tested(self) -> int:
        return self.total - self.counts.get("no tests", 0)

    @property
    def equivalent(self) -> int:
        return sum(1 for s in self.survivors if equivalence(s) is not None)

    def score(self, *, of_tested: bool = False, of_distinct: bool = False) -> float | None:
        whole = self.tested if of_tested else self.total
        if of_distinct:
            whole -= self.equivalent
        return self.detected / whole if whole else None

    def margin(self) -> float | None:
        """Half the 95% interval of a sampled score (normal approximation, finite population)."""
        score = self.score()
        if self.sampled_from is None or score is None or self.total >= self.sampled_from:
            return None
        correction = (self.sampled_from - self.total) / max(self.sampled_from - 1, 1)
        return 1.96 * math.sqrt(score * (1 - score) / self.total * correction)


def load_config() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    data = tomllib.loads(CONFIG.read_text())
    return data["defaults"], data["modules"]


def select(modules: dict[str, dict[str, Any]], wanted: list[str]) -> list[str]:
    """Module names for the arguments: a name, a prefix (`hub` = every `hub.*`), or a file."""
    if not wanted:
        return list(modules)
    chosen: list[str] = []
    for arg in wanted:
        path = arg.removeprefix("./")
        found = [
            name
            for name, module in modules.items()
            if name == arg
            or name.startswith(arg + ".")
            or any(fnmatch.fnmatch(path, pattern) for pattern in module["source"])
        ]
        if not found:
            raise SystemExit(f"scripts/mutation: no module '{arg}' in mutation.toml; try --list")
        chosen += [name for name in found if name not in chosen]
    return chosen


def commit_of(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def lay_snapshot(dest: Path, ref: str | None) -> None:
    """The tree at `ref` (git archive), or the working tree's tracked and untracked files."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        source = ROOT / raw.decode()
        if source.is_file():
            target = dest / raw.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def configure(dest: Path, defaults: dict[str, Any], module: dict[str, Any]) -> list[str]:
    """Append this module's [tool.mutmut] to the snapshot's pyproject.toml; returns its files."""
    files = sorted(
        {str(p.relative_to(dest)) for pattern in module["source"] for p in dest.glob(pattern) if p.is_file()}
    )
    packages = [p for p in defaults["packages"] if (dest / p).exists()]
    also_copy = [p for p in defaults["also_copy"] if (dest / p).exists()]
    tests = [t for t in module["tests"] if (dest / t).exists()]
    section = f"""

[tool.mutmut]
# written by scripts/mutation for this run only
source_paths = {_toml_list(packages)}
only_mutate = {_toml_list(files)}
also_copy = {_toml_list(also_copy)}
pytest_add_cli_args = {_toml_list(defaults["pytest_args"])}
pytest_add_cli_args_test_selection = {_toml_list(tests)}
timeout_multiplier = {float(defaults["timeout_multiplier"])}
timeout_constant = {float(defaults["timeout_constant"])}
# gRPC servers and worker threads are not fork-safe: fork each mutant from a clean server.
process_isolation = "forkserver"
# the snapshot is no git checkout of its own
use_git_change_detection = false
"""
    pyproject = dest / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + section)
    return files


def statuses(dest: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for meta in (dest / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text())
        for name, code in data["exit_code_by_key"].items():
            result[name] = STATUS_BY_EXIT_CODE.get(code, "not checked" if code is None else "suspicious")
    return result


def _function_start(source: str, mutant: str) -> int | None:
    """First line (decorators included) of the function a mutant name points at."""
    base = mutant.rsplit("__mutmut_", 1)[0].rpartition(".")[2]  # x_name or xǁClassǁname
    parts = base.removeprefix("x").strip("ǁ").split("ǁ") if "ǁ" in base else [base.removeprefix("x_")]
    wanted_class, wanted_function = (parts[0], parts[-1]) if len(parts) > 1 else (None, parts[0])
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and wanted_class == node.name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == wanted_function:
                    return min([item.lineno, *(d.lineno for d in item.decorator_list)])
        if (
            wanted_class is None
            and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name == wanted_function
            and node.col_offset == 0
        ):
            return min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return None


def describe(dest: Path, mutant: str, files: list[str]) -> Survivor:
    """The mutant's file, line and changed lines, from `mutmut show`."""
    shown = subprocess.run(
        [str(MUTMUT), "show", mutant], cwd=dest, capture_output=True, text=True, check=False
    ).stdout
    module_path = mutant.rsplit("__mutmut_", 1)[0].rpartition(".")[0].replace(".", "/") + ".py"
    file = next((f for f in files if f == module_path), module_path)
    before, after, line, offset = [], [], None, None
    for text in shown.splitlines():
        hunk = re.match(r"@@ -(\d+)", text)
        if hunk:
            offset = int(hunk.group(1))
            continue
        if offset is None or text.startswith(("---", "+++")):
            continue
        if text.startswith("-"):
            before.append(text[1:].strip())
            line = line if line is not None else offset
            offset += 1
        elif text.startswith("+"):
            after.append(text[1:].strip())
            line = line if line is not None else offset
        else:
            offset += 1
    start = _function_start((dest / file).read_text(), mutant) if (dest / file).exists() else None
    absolute = start + line - 1 if start is not None and line is not None else None
    return Survivor(mutant, file, absolute, before, after)


def run_module(
    name: str,
    defaults: dict[str, Any],
    module: dict[str, Any],
    ref: str | None,
    workers: int,
    sample: int | None = None,
    seed: int = 1,
) -> ModuleResult:
    dest = WORK / name
    started = time.monotonic()
    lay_snapshot(dest, ref)
    files = configure(dest, defaults, module)
    result = ModuleResult(name, files, list(module["tests"]))
    if not files:
        result.status = "no source files matched"
        return result
    log = dest / "mutmut.log"
    print(f"==> {name}: {len(files)} file(s), tests {' '.join(module['tests'])} (log: {log})", flush=True)
    extra_env = {name: str(value) for name, value in module.get("env", {}).items()}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **extra_env}
    command = ["nice", "-n", "10", str(MUTMUT), "run", "--max-children", str(workers)]
    with log.open("wb") as out:

        def mutmut_run(*names: str) -> int:
            return subprocess.run(
                [*command, *names], cwd=dest, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
            ).returncode

        if sample is None:
            code = mutmut_run()
        else:
            # A name that matches nothing: mutmut generates the mutants and records which
            # tests reach which function, then stops; the sample is drawn from what it made.
            mutmut_run("no-such-mutant")
            names = sorted(statuses(dest))
            result.sampled_from = len(names)
            chosen = random.Random(seed).sample(names, min(sample, len(names)))
            code = mutmut_run(*chosen) if chosen else 1
    result.seconds = time.monotonic() - started
    found = statuses(dest)
    if code != 0 or not found:
        tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-15:]
        result.status = f"mutmut exited {code}: " + " | ".join(line.strip() for line in tail if line.strip())
    for status in found.values():
        result.counts[status] = result.counts.get(status, 0) + 1
    for mutant, status in sorted(found.items()):
        if status == "survived":
            result.survivors.append(describe(dest, mutant, files))
        elif status == "no tests":
            result.untested.append(describe(dest, mutant, files))
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _score(result: ModuleResult) -> str:
    margin = result.margin()
    if result.sampled_from is None or margin is None:
        return _pct(result.score())
    return f"{_pct(result.score())} ± {margin * 100:.1f} (sample of {result.total} of {result.sampled_from})"


def render(results: list[ModuleResult], measured: str) -> str:
    lines = [
        f"# Mutation testing ({measured})",
        "",
        "| module | mutants | killed/timeout | survived | of them equivalent | no tests | score "
        "| score without equivalent | time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.module} | {r.total} | {r.detected} | {r.counts.get('survived', 0)} | {r.equivalent} | "
            f"{r.counts.get('no tests', 0)} | {_score(r)} | {_pct(r.score(of_distinct=True))} | "
            f"{r.seconds:.0f} s |"
        )
    for r in results:
        if r.status != "ok":
            lines += ["", f"**{r.module}**: {r.status}"]
    for r in results:
        for title, mutants in (("surviving", r.survivors), ("without tests", r.untested)):
            if not mutants:
                continue
            lines += ["", f"## {r.module}: {len(mutants)} {title}", ""]
            for m in mutants:
                where = f"{m.file}:{m.line}" if m.line else m.file
                change = f"`{' / '.join(m.before) or '(nothing)'}` -> `{' / '.join(m.after) or '(removed)'}`"
                why = equivalence(m) if title == "surviving" else None
                lines.append(f"- {where} {change} ({m.name})" + (f" [equivalent: {why}]" if why else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/mutation",
        description="Mutation testing (mutmut 3) per module of mutation.toml, each with its own tests.",
    )
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help="a name, a prefix (hub) or a file; default: all"
    )
    parser.add_argument("--list", action="store_true", help="list the modules and their tests, then exit")
    parser.add_argument("--ref", default="HEAD", help="commit to test (default HEAD)")
    parser.add_argument("--worktree", action="store_true", help="test the working tree instead of a commit")
    parser.add_argument("--workers", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="run N random mutants per module (overrides mutation.toml)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample (default 1)")
    args = parser.parse_args(argv)
    defaults, modules = load_config()
    chosen = select(modules, args.modules)
    if args.list:
        for name in chosen:
            module = modules[name]
            print(f"{name:22s} {' '.join(module['source'])}")
            print(f"{'':22s} tests: {' '.join(module['tests'])}")
        return 0
    if not MUTMUT.exists():
        raise SystemExit(f"scripts/mutation: {MUTMUT} is missing; install requirements-dev.txt")
    ref = None if args.worktree else commit_of(args.ref)
    measured = "working tree" if ref is None else f"commit {ref[:12]}"
    results = []
    for name in chosen:
        sample = args.sample if args.sample is not None else modules[name].get("sample")
        result = run_module(name, defaults, modules[name], ref, args.workers, sample, args.seed)
        results.append(result)
        print(
            f"    {name}: {result.detected}/{result.total} detected ({_score(result)}), "
            f"{result.counts.get('survived', 0)} survived, {result.counts.get('no tests', 0)} without tests, "
            f"{result.seconds:.0f} s{'' if result.status == 'ok' else ' -- ' + result.status}",
            flush=True,
        )
    report = render(results, measured)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "report.md").write_text(report)
    (WORK / "report.json").write_text(
        json.dumps({"measured": measured, "modules": [asdict(r) for r in results]}, indent=2)
    )
    print()
    print(report)
    print(f"(written to {WORK / 'report.md'} and report.json)")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
