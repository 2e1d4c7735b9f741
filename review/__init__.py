"""Review web app and API."""
