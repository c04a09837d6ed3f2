"""The console's pages, one router module per area (auth, admin back office, portal)."""
