"""The rules in force, read from the rules file and reloaded when it changes (polled by
modification time) or on request; a bad file is refused and the old rules stay."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.clock import sleep_until_or_stop
from services.routing.domain.directory import Directory
from services.routing.domain.rules import RulesError, RuleSet
from services.routing.metrics import RULES_COUNT, RULES_RELOADS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadResult:
    reloaded: bool
    version: str
    rules: int
    error: str = ""


class RulesSource:
    """At start the file is checked against the shipped directory, except that an
    ``institution:<id>`` target may name an institution added at run time (not read yet):
    `recheck`, a startup step after the stored institutions are read, checks it in full.
    A refused file is tried again when it changes and whenever the directory does (a
    replica's copy is up to 10 s behind the institution a new rule names)."""

    def __init__(
        self, path: Path, directory: Callable[[], Directory], poll_seconds: float = 1.0
    ) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._directory = directory
        self._mtime = self._stat()
        # A bad file at start stops the service (RulesError).
        self.current = RuleSet.load(path, directory(), known_institutions=False)
        self.last_error = ""
        self._refused_with: Directory | None = None  # the directory a refusal was judged by
        RULES_COUNT.set(len(self.current.rules))

    def __call__(self) -> RuleSet:
        return self.current

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self, retry: bool = False) -> ReloadResult:
        """Load the file now. `retry`: the same file again after the directory moved (a
        refusal with the same error is then neither logged nor counted again)."""
        self._mtime = self._stat()
        directory = self._directory()
        try:
            rules = RuleSet.load(self.path, directory)
        except Exception as exc:  # noqa: BLE001 - whatever the file holds, it is refused
            error = str(exc) if isinstance(exc, RulesError) else f"{type(exc).__name__}: {exc}"
            repeated = retry and error == self.last_error
            self.last_error, self._refused_with = error, directory
            if not repeated:  # a file retried on each directory refresh is counted once
                RULES_RELOADS.labels(outcome="refused").inc()
                log.error("rules file refused; keeping the old rules", extra={"error": error})
            return ReloadResult(False, self.current.version, len(self.current.rules), error)
        self.current, self.last_error, self._refused_with = rules, "", None
        RULES_RELOADS.labels(outcome="loaded").inc()
        RULES_COUNT.set(len(rules.rules))
        log.info("rules loaded", extra={"version": rules.version, "rules": len(rules.rules)})
        return ReloadResult(True, rules.version, len(rules.rules))

    def reload_if_changed(self) -> ReloadResult | None:
        if self._stat() != self._mtime:
            return self.reload()
        if self._refused_with is not None and self._directory() is not self._refused_with:
            return self.reload(retry=True)
        return None

    async def recheck(self) -> None:
        """Startup step, after the stored institutions are read: the full check of the file
        the service started with. Refused, the rules stay as loaded (a target not in the
        directory is skipped when routing) and the refusal is reported like a reload's."""
        self.reload()

    async def watch(self, stop: asyncio.Event) -> None:
        """Worker: reload whenever the file's modification time or size changes."""
        while not await sleep_until_or_stop(stop, self.poll_seconds):
            self.reload_if_changed()
