"""The Slack door: a Bolt app over HTTP (mounted on the FastAPI app) or Socket Mode."""
