"""
The Forward-Forward objectives: what a layer's local loss asks of its goodness.

- `goodness`: the per-sample (or per-position) goodness every objective reads;
- `pos_neg`: Hinton's positive/negative objective and its losses (softplus, SymBa);
- `class_groups`: channel groups, one per class, under a cross-entropy (no negatives).

`OBJECTIVES` in core.hyperparams names them for the configs.
"""
