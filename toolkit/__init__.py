"""agent-journal-toolkit: analytics and forensics over the event journals AI agents leave behind."""

__version__ = "0.1.0"
