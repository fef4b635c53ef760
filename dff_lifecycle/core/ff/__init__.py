"""
The Forward-Forward maths: layers, their local trainer, negatives, whole models in one process.

The layer-type registry (`layers`), the input normalisations, the fused closed-form step,
negative samples, a layer split by output units (`sharding`), the supervised head,
scoring activities into predictions, and memory estimates. The objectives have their
own home beside this one (`core/objectives/`).
"""
