"""requirements.lock, which the production image installs with `pip install --require-hashes
--no-deps` (deploy/Dockerfile), and requirements.txt cannot drift apart silently:

* every runtime requirement is pinned, at a version inside its range, with file hashes;
* the lock holds what the runtime requirements pull in and nothing else (with `--no-deps`
  a dependency missing from the lock is missing from the image);
* the development venv runs the locked versions (`make venv` installs with the lock's pins as
  constraints), so the tests test what ships;
* the embedded stack (requirements-embedded.txt) stays out of the image, and every module of
  the production services imports with the locked packages alone.

After a change to requirements.txt: `make lock`, then `make venv`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "requirements.txt"
EMBEDDED = ROOT / "requirements-embedded.txt"
DEV = ROOT / "requirements-dev.txt"
LOCK = ROOT / "requirements.lock"
# The image's interpreter (deploy/Dockerfile: python:3.11-slim), for environment markers.
IMAGE_ENVIRONMENT: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)")


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    hashes: tuple[str, ...]


def requirement_lines(path: Path) -> Iterator[str]:
    """The logical lines of a requirements file: continuations joined, comments dropped."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if line:
            yield line


def requirements(path: Path) -> list[Requirement]:
    """The requirements of a file and of the files it includes with `-r`."""
    found: list[Requirement] = []
    for line in requirement_lines(path):
        if m := re.fullmatch(r"-r\s+(\S+)", line):
            found.extend(requirements(path.parent / m.group(1)))
        else:
            assert not line.startswith("-"), f"{path.name}: unexpected option {line!r}"
            found.append(Requirement(line))
    return found


def applies(requirement: Requirement, extra: str = "") -> bool:
    marker = requirement.marker
    return marker is None or marker.evaluate({**IMAGE_ENVIRONMENT, "extra": extra})


@cache
def lock() -> tuple[dict[NormalizedName, Pin], tuple[str, ...]]:
    """The lock's pins by canonical name, and the lines that are not `name==version` with
    sha256 hashes (or pin a package twice)."""
    pins: dict[NormalizedName, Pin] = {}
    bad: list[str] = []
    for line in requirement_lines(LOCK):
        m = _PIN.fullmatch(line)
        if m is None or canonicalize_name(m.group(1)) in pins:
            bad.append(line)
            continue
        name = canonicalize_name(m.group(1))
        hashes = tuple(re.findall(r"sha256:([0-9a-f]{64})", m.group(3)))
        pins[name] = Pin(name, Version(m.group(2)), hashes)
    return pins, tuple(bad)


def pins() -> dict[NormalizedName, Pin]:
    return lock()[0]


def test_every_pin_is_exact_and_hashed() -> None:
    _, bad = lock()
    assert bad == (), "not `name==version --hash=sha256:...` (or pinned twice)"
    assert len(pins()) >= 10


def test_every_runtime_requirement_is_pinned_within_its_range() -> None:
    problems = []
    for requirement in requirements(RUNTIME):
        if not applies(requirement):
            continue
        pin = pins().get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement}: not in requirements.lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement}: requirements.lock pins {pin.version}")
    assert problems == [], "run `make lock`"


def installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def test_the_venv_runs_the_locked_versions() -> None:
    """What the tests import is what the image installs (the venv's install takes the
    lock's pins as constraints)."""
    differ = {}
    for pin in pins().values():
        dist = installed(pin.name)
        found = Version(dist.version) if dist is not None else None
        if found != pin.version:
            differ[pin.name] = f"{found} installed, {pin.version} locked"
    assert differ == {}, "run `make venv`"


def test_the_lock_holds_the_dependencies_and_nothing_else() -> None:
    """Walks the dependencies of requirements.txt through the installed packages' metadata
    (the locked versions: see the test above), evaluated for the image's Python."""
    missing: list[str] = []
    reached: set[NormalizedName] = set()
    todo = [(r, "requirements.txt") for r in requirements(RUNTIME) if applies(r)]
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    while todo:
        requirement, wanted_by = todo.pop()
        name = canonicalize_name(requirement.name)
        pin = pins().get(name)
        if pin is None:
            missing.append(f"{requirement} (for {wanted_by}): not in the lock")
            continue
        if not requirement.specifier.contains(pin.version, prereleases=True):
            missing.append(f"{requirement} (for {wanted_by}): the lock pins {pin.version}")
            continue
        reached.add(name)
        extras = frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = installed(name)
        if dist is None or Version(dist.version) != pin.version:
            pytest.skip(f"{name} {pin.version} is not installed: run `make venv`")
        for line in dist.requires or []:
            child = Requirement(line)
            if any(applies(child, extra) for extra in ("", *extras)):
                todo.append((child, f"{name} {pin.version}"))
    assert missing == [], "run `make lock`"
    assert sorted(set(pins()) - reached) == [], "pinned but not needed: run `make lock`"


def test_the_embedded_stack_stays_out_of_the_image() -> None:
    embedded = {canonicalize_name(r.name) for r in requirements(EMBEDDED)}
    assert {"confluent-kafka", "secantusdb"} <= embedded
    runtime = {canonicalize_name(r.name) for r in requirements(RUNTIME)}
    assert embedded & runtime == set()
    assert embedded & set(pins()) == set()
    # `make run` and `make test` install requirements-dev.txt: both files and the tools.
    dev_lines = list(requirement_lines(DEV))
    assert {"-r requirements.txt", "-r requirements-embedded.txt"} <= set(dev_lines)


# Imports every module of services/ but the embedded-stack launcher (services/stack), with
# an import hook that refuses every top-level module neither the standard library, the
# project (services, the generated lapor package) nor a locked package provides: as in the
# image, which holds the locked packages only.
_IMPORT_ALL = """
import importlib, importlib.abc, json, sys
allowed = set(json.loads(sys.argv[1]))
class ImageOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top not in allowed and not top.startswith("_sysconfigdata"):  # stdlib, unlisted
            raise ModuleNotFoundError(f"No module named {top!r} in the image", name=top)
        return None
sys.meta_path.insert(0, ImageOnly())
failed = {}
for module in json.loads(sys.argv[2]):
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed[module] = repr(exc)
print(json.dumps(failed))
"""


def production_modules() -> list[str]:
    modules = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[1] == "stack":
            continue
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_production_services_import_with_the_locked_packages_only() -> None:
    locked = set(pins())
    allowed = set(sys.stdlib_module_names) | set(sys.builtin_module_names) | {"services", "lapor"}
    for top, dists in metadata.packages_distributions().items():
        if any(canonicalize_name(d) in locked for d in dists):
            allowed.add(top)
    modules = production_modules()
    assert {"services.intake.__main__", "services.notify.bootstrap"} <= set(modules)
    assert not any(m.startswith("services.stack") for m in modules)
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, json.dumps(sorted(allowed)), json.dumps(modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}
