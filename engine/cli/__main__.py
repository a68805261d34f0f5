"""`python -m engine.cli`: the same `wfa` command line."""

from engine.cli import main

main()
