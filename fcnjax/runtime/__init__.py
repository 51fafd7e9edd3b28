"""The runtime every entry point starts: XLA flags, the allocator, the
multi-host start, log levels, one-line errors."""
