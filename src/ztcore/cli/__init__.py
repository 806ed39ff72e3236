"""The `ztnode` command line (click); each sub-command group lives in its own module."""
