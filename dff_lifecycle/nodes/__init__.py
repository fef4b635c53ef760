"""The processes that do the work: FF layer lifecycle nodes and the server containers
that host them. `parameters` is their torch-free parameter tables."""
