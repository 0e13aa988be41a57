"""The master service: HTTP API over the store, long-poll dispatch and the reaper."""
