"""embrec gateway package."""
