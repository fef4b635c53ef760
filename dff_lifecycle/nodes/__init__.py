"""
The processes that do the work: FF layer lifecycle nodes and their server containers.

The server containers host the layer nodes. `parameters` is their torch-free parameter
tables.
"""
