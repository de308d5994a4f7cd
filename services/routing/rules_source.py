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
    def __init__(
        self, path: Path, directory: Callable[[], Directory], poll_seconds: float = 1.0
    ) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._directory = directory
        self._mtime = self._stat()
        self.current = RuleSet.load(path, directory())  # a bad file at start stops the service
        self.last_error = ""
        RULES_COUNT.set(len(self.current.rules))

    def __call__(self) -> RuleSet:
        return self.current

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self) -> ReloadResult:
        self._mtime = self._stat()
        try:
            rules = RuleSet.load(self.path, self._directory())
        except RulesError as exc:
            self.last_error = str(exc)
            RULES_RELOADS.labels(outcome="refused").inc()
            log.error("rules file refused; keeping the old rules", extra={"error": str(exc)})
            return ReloadResult(False, self.current.version, len(self.current.rules), str(exc))
        self.current, self.last_error = rules, ""
        RULES_RELOADS.labels(outcome="loaded").inc()
        RULES_COUNT.set(len(rules.rules))
        log.info("rules loaded", extra={"version": rules.version, "rules": len(rules.rules)})
        return ReloadResult(True, rules.version, len(rules.rules))

    def reload_if_changed(self) -> ReloadResult | None:
        return self.reload() if self._stat() != self._mtime else None

    async def watch(self, stop: asyncio.Event) -> None:
        """Worker: reload whenever the file's modification time or size changes."""
        while not await sleep_until_or_stop(stop, self.poll_seconds):
            self.reload_if_changed()
