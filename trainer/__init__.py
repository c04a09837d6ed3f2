"""embrec trainer package."""
