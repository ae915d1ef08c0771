"""agent-journal-toolkit: analytics and forensics over the event journals AI agents leave behind."""

import os as _os

from toolkit import allocators as _allocators

_allocators.apply(_os.environ, _allocators.RUNTIME_ENV)  # before Polars and Arrow allocate

__version__ = "0.1.0"
