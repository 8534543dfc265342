"""``manage.py konvrt_sweeper``: recovery sweeps, RQ scheduler takeover and this machine's temp
cleanup, in one process per worker machine (apps/operations/services/sweeper.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.operations.services.sweeper import Sweeper


class Command(BaseCommand):
    help = "Run the recovery sweep, keep RQ's scheduler alive and clean this machine's temp files."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Do one round of everything and exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        sweeper = Sweeper()
        if options["once"]:
            sweeper.tick()
            sweeper.keeper.stop()
            return
        sweeper.run_forever()
