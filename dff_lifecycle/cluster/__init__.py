"""
An emulated cluster on one machine: k devices, each a network namespace on a private bridge.

`spec` (pure) says what a cluster is and checks it; `plan` (pure) turns a spec into
the ordered steps that make it, each with its undo; `host` carries steps out and
keeps a record of what it made, so that `down` removes exactly that.
"""
