"""PayFlow's HTTP API."""
