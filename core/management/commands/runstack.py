from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import honcho.manager  # type: ignore[import-untyped]
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from honcho.environ import parse_procfile  # type: ignore[import-untyped]
from honcho.manager import Manager
from honcho.printer import Printer  # type: ignore[import-untyped]

# honcho SIGKILLs a process still alive 5 s after SIGTERM; a Celery worker finishing its
# current task on the filesystem broker needs longer than that to stop cleanly.
STOP_GRACE_SECONDS = 20


class Command(BaseCommand):
    help = (
        "Run every process of the Procfile (web, worker, beat) in the foreground; Ctrl-C stops all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--procfile", default=str(Path(settings.BASE_DIR) / "Procfile"))

    def handle(self, *args: Any, procfile: str, **options: Any) -> None:
        honcho.manager.KILL_WAIT = STOP_GRACE_SECONDS
        processes = parse_procfile(Path(procfile).read_text()).processes
        manager = Manager(Printer(sys.stdout))
        for name, command in processes.items():
            manager.add_process(name, command, env=dict(os.environ), cwd=str(settings.BASE_DIR))
        manager.loop()
        sys.exit(manager.returncode)
