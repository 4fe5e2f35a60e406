"""basewatch.app: the service (HTTP, persistence, jobs, auth, CLI)."""

from imagery import __version__

__all__ = ["__version__"]
