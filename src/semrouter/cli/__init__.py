"""The `semrouter` command line."""
