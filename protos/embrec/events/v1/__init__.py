"""Generated package (services/devtools/codegen.py). Do not edit."""
