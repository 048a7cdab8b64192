"""memlake: persistent, typed memory for AI agents. Client side: SDK, CLI, all-in-one runner."""

from memlake import memories
from memlake.client import MemlakeClient, MemlakeError

__all__ = ["MemlakeClient", "MemlakeError", "memories"]
__version__ = "0.1.0"
