"""ffleet: run FFmpeg workloads across a fleet of machines and bring every result home."""

__version__ = "0.1.0"
