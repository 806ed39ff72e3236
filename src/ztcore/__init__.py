"""ztcore: ZeroTier 1.x networking embedded in Python.

Layers, each importing only from those below it:
crypto -> identity -> vl1 -> vl2 -> node -> controller -> runtime / cli.
"""

__version__ = "0.1.0"
