"""embrec services package."""
