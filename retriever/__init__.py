"""embrec retriever package."""
