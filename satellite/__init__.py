"""voice-satellite: Wyoming satellite and cloud speech bridge for Home Assistant."""

__version__ = "0.1.0"
