"""The doors onto the core: the CLI today; HTTP and Slack adapters build on the same `Verbatim`."""
