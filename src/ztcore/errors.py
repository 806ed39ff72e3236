"""Exception types shared by every layer."""


class ZTError(Exception):
    """Base class of every error ztcore raises on purpose."""


class MissingLibraryError(ZTError, ImportError):
    """A required shared library (libsodium) could not be loaded."""


class InvalidFormatError(ZTError, ValueError):
    """Input bytes or text do not follow the ZeroTier format they claim to."""
