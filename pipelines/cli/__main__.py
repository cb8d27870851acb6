"""``python -m pipelines.cli`` == ``recipe-embed`` (used for the training child process)."""

from pipelines.cli import main

main()
