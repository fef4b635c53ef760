"""
The pipeline stage: what one layer node does with each tensor, and how a model becomes stages.

`model_graph` groups a model's rows into stages; `stage_ops` fuses the parameter-free
rows around a stage's layer; `batch_codec` packs a batch into one tensor; `batches`
builds positive and negative batches; `layer_stage` runs a stage on a received tensor;
`stage_costs` measures each stage's step. Pure torch: the nodes wrap it.
"""
