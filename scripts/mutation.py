"""``make mutation``: mutation-test each core module against its own tests only, with mutmut.

The modules and their tests are listed under ``[tool.konvrt.mutation.modules]`` in pyproject.toml.
mutmut reads its settings from the pyproject.toml of the directory it runs in and mutates one set of
files against one set of tests, so each module gets a directory of its own, ``.mutation/<name>/``:
links to the project's code and tests, and a pyproject.toml that is the project's plus a
``[tool.mutmut]`` table for that module. mutmut copies the code into ``mutants/`` there, records
which of the module's tests reach which function, and for each mutant runs those tests (``-x``) in
a process forked from its own. Every run starts afresh, so no result outlives the code it was
measured on.

The tests use the test database of DATABASE_URL, created once per module here and then reused by
every mutant (``--reuse-db``), and REDIS_URL's database, which they flush: one mutant runs at a
time unless ``--max-children`` says otherwise.

A mutant counts as killed when a test failed or timed out. A surviving mutant listed under
``equivalent`` (a change no test can observe, with the reason) is left out of the score, but only
while its diff is still the one recorded there: mutmut numbers mutants in the order it makes them,
so after an edit of the module a number can name another mutant. The run fails when a module's
score is under ``fail_under``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
# What a test run imports, copied into mutants/ (only the module under test is mutated); mutmut
# copies tests/ and pyproject.toml beside it on its own.
CODE = ["apps", "config", "scripts"]
LINKED = [*CODE, "tests"]
# mutmut's exit codes (mutmut/stats.py), folded into what the score needs.
KILLED = {1, 3}
TIMEOUT = {24, -24, 36, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Module:
    name: str
    source: str
    tests: list[str]
    # mutant name → {"diff": the changed lines as `diff_of` gives them, "reason": why no test can tell}
    equivalent: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def dotted(self) -> str:
        return self.source.removesuffix(".py").replace("/", ".")


@dataclass
class Result:
    module: Module
    statuses: dict[str, str]  # mutant name (without the module's dotted path) → status
    diffs: dict[str, list[str]]  # of the survivors

    @property
    def equivalent(self) -> list[str]:
        return [
            name
            for name, entry in self.module.equivalent.items()
            if self.statuses.get(name) == "survived" and self.diffs.get(name) == entry["diff"]
        ]

    @property
    def total(self) -> int:
        return len(self.statuses) - len(self.equivalent)

    @property
    def killed(self) -> int:
        return sum(1 for status in self.statuses.values() if status in {"killed", "timeout"})

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0

    def survivors(self) -> list[str]:
        excluded = set(self.equivalent)
        return [name for name, status in self.statuses.items() if status == "survived" and name not in excluded]


def load_settings() -> tuple[dict[str, Any], list[Module]]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["konvrt"]["mutation"]
    modules = [
        Module(name=name, source=spec["source"], tests=spec["tests"], equivalent=spec.get("equivalent", {}))
        for name, spec in settings["modules"].items()
    ]
    return settings, modules


def mutmut_command() -> str:
    return shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"


def prepare(module: Module) -> Path:
    """A fresh directory from which mutmut sees the project with this module's settings."""
    directory = WORK / module.name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name in LINKED:
        (directory / name).symlink_to(ROOT / name, target_is_directory=True)
    mutmut = {
        "source_paths": CODE,
        "only_mutate": [module.source],
        "pytest_add_cli_args_test_selection": module.tests,
        # pytest-django would put the directory of the first manage.py above the tests on sys.path:
        # the project's own, whose code is not mutated.
        "pytest_add_cli_args": ["--reuse-db", "-o", "django_find_project=false"],
    }
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in mutmut.items())
    project = (ROOT / "pyproject.toml").read_text()
    (directory / "pyproject.toml").write_text(f"{project}\n# Written by scripts/mutation.py.\n[tool.mutmut]\n{table}\n")
    return directory


def status_of(exit_code: int | None) -> str:
    if exit_code in KILLED:
        return "killed"
    if exit_code in TIMEOUT:
        return "timeout"
    if exit_code in SURVIVED:
        return "survived"
    if exit_code in NO_TESTS:
        return "no tests"
    return "not checked" if exit_code is None else "suspicious"


def diff_of(module: Module, mutant: str) -> list[str]:
    """The lines a mutant changes, as ``mutmut show`` gives them, with the indentation dropped:
    ``["- progress=0,", "+ progress=1,"]``."""
    shown = subprocess.run(
        [mutmut_command(), "show", f"{module.dotted}.{mutant}"],
        cwd=WORK / module.name,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        f"{line[0]} {line[1:].strip()}"
        for line in shown.splitlines()
        if line[:1] in {"+", "-"} and not line.startswith(("+++", "---")) and line[1:].strip()
    ]


def run(module: Module, *, max_children: int) -> Result:
    directory = prepare(module)
    log = directory / "mutmut.log"
    print(f"{module.name}: mutating {module.source} (mutmut's output: {log.relative_to(ROOT)})", flush=True)
    # The module's tests as they are, against a test database created now and kept for the mutants.
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--create-db", "--reuse-db", *module.tests], cwd=ROOT, check=True
    )
    with log.open("w") as output:
        completed = subprocess.run(
            [mutmut_command(), "run", "--max-children", str(max_children)], cwd=directory, stdout=output, stderr=output
        )
    meta = directory / "mutants" / f"{module.source}.meta"
    if completed.returncode != 0 or not meta.is_file():
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"mutmut failed on {module.name} (exit {completed.returncode}):\n{tail}")
    prefix = f"{module.dotted}."
    statuses = {
        key.removeprefix(prefix): status_of(code)
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items()
    }
    diffs = {name: diff_of(module, name) for name, status in statuses.items() if status == "survived"}
    return Result(module, statuses, diffs)


def report(result: Result) -> None:
    module = result.module
    print(
        f"{module.name}: killed {result.killed}/{result.total} ({result.score:.1f}%)"
        f" of {module.source} by {', '.join(module.tests)}"
    )
    counts = ", ".join(f"{status} {count}" for status, count in sorted(Counter(result.statuses.values()).items()))
    print(f"    {counts}; of the survivors, equivalent and left out: {len(result.equivalent)}")
    for name in result.survivors():
        print(f"    survived {name}")
        for line in result.diffs[name]:
            print(f"        {line}")
    for name, status in sorted(result.statuses.items()):
        if status not in {"killed", "timeout", "survived"}:
            print(f"    {status}: {name}")
    for name, entry in module.equivalent.items():
        if name in result.equivalent:
            continue
        if result.statuses.get(name) == "survived":
            print(f"    note: {name} is listed as equivalent with another diff ({entry['diff']}); not left out")
        else:
            status = result.statuses.get(name, "no such mutant")
            print(f"    note: {name} is listed as equivalent but is {status}")


def main() -> int:
    settings, modules = load_settings()
    names = [module.name for module in modules]
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"the modules to test (all by default: {', '.join(names)})")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested at once (they share databases)")
    arguments = parser.parse_args()
    unknown = sorted(set(arguments.names) - set(names))
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}")
    if not os.environ.get("DATABASE_URL"):
        print("DATABASE_URL is not set: the mutants are tested on SQLite, not PostgreSQL.", file=sys.stderr)

    selected = [module for module in modules if not arguments.names or module.name in arguments.names]
    results = [run(module, max_children=arguments.max_children) for module in selected]
    print()
    for result in results:
        report(result)
    print()
    width = max(len(result.module.name) for result in results)
    for result in results:
        print(f"{result.module.name:<{width}}  killed {result.killed:>4}/{result.total:<4} {result.score:5.1f}%")
    fail_under = settings.get("fail_under", 0)
    below = [result.module.name for result in results if result.score < fail_under]
    if below:
        print(f"Under {fail_under}% of mutants killed: {', '.join(below)}.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
