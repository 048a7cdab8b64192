"""memlake: persistent, typed memory for AI agents. Client side: SDK, CLI, all-in-one runner."""

from memlake.client import MemlakeClient, MemlakeError

__all__ = ["MemlakeClient", "MemlakeError"]
__version__ = "0.1.0"
