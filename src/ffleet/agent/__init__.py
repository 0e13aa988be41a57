"""The worker side: hardware detection, the master client, FFmpeg execution and measurement."""
