"""Sample data for a tech-gadget store with real latent structure (``embrec sample-data``)."""

from services.sampledata.generator import SampleData, generate, write_csv

__all__ = ["SampleData", "generate", "write_csv"]
