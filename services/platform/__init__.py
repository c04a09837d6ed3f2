"""The platform service: `GET /health` for the whole deployment."""
