"""`python -m ztcore` runs the `ztnode` command line."""

from ztcore.cli.main import main

main()
