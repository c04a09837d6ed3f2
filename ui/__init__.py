"""embrec ui package."""
