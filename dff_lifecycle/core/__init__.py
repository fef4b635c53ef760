"""
Pure PyTorch Forward-Forward core: no ROS imports here.

- `config`, `hyperparams`: model and layer configs, validated in one place;
- `ff/`: the FF maths (layers and their registry, the local trainer, negatives,
  whole models in one process, scoring, sharding, memory estimates);
- `objectives/`: what a layer's local loss asks of its goodness;
- `stage/`: how a model becomes pipeline stages and what a stage does with a tensor;
- `data/`: datasets, downloads, image folders, camera images, augmentation;
- `run/`: the single-process run, evaluation, metrics, weight files, predictions.
"""
