"""``python -m reconciler`` runs the CLI."""

from .cli import run

run()
