"""
Parameter tables of the layer node and the server container (no torch, no rclpy).

The layer's hyperparameters are not restated here: they are the fields of
`core.hyperparams.FFHyperParams`, turned into parameters with their defaults
and descriptions. The master's plan fills exactly this table for each layer.
"""
from __future__ import annotations

from dff_lifecycle.common.parameter_table import Param
from dff_lifecycle.core.chunking import DEFAULT_CHUNK_ELEMENTS
from dff_lifecycle.core.hyperparams import field_docs

CHUNK_ELEMENTS = Param(int, DEFAULT_CHUNK_ELEMENTS, 'Float32 values per chunk message (1 MiB).', 1)

HYPERPARAMETERS = {name: Param(type(default), default, text, minimum)
                   for name, (default, text, minimum) in field_docs().items()}

LAYER_PARAMETERS = {
    'model': Param(str, None, 'Model this layer belongs to (names the weight file).'),
    'layer_index': Param(int, None, 'Index of the layer in the model config.', 0),
    'layer_type': Param(str, 'FFDense', 'Layer type from the layer registry.'),
    'in_features': Param(int, None, 'Input size (flattened).', 1),
    'out_features': Param(int, None, 'Output size.', 1),
    'seed': Param(int, 0, 'Seed of the weight initialisation.', 0),
    **HYPERPARAMETERS,
    'steps_per_batch': Param(int, 1, 'Optimisation steps per received batch '
                                     '(full-batch recipe: N).', 1),
    'overlay_classes': Param(int, 0, 'First layer of a supervised model: the number of '
                                     'classes whose labels it overlays on the images it '
                                     'receives (0: inputs arrive ready).', 0),
    'train_rows': Param(int, 0, 'Rows of its largest training batch (positives and negatives), '
                                'for the memory check before allocating; 0: unknown.', 0),
    'infer_rows': Param(int, 0, 'Rows of its largest inference batch, for the same check.', 0),
    'report_goodness': Param(bool, False, 'Publish per-sample goodness of inference batches.'),
    'report_features': Param(bool, False, 'Publish normalised activities of inference batches.'),
    'train_in_topic': Param(str, None, 'Training input topic (positive and negative tensors).'),
    'infer_in_topic': Param(str, None, 'Inference input topic.'),
    'train_out_topic': Param(str, '', 'Training output topic; empty: nothing published.'),
    'infer_out_topic': Param(str, '', 'Inference output topic; empty: nothing published.'),
    'result_topic': Param(str, None, 'Topic of goodness / features reported to the master.'),
    'status_topic': Param(str, None, "Topic of this layer's LayerStatus messages."),
    'status_period_s': Param(float, 0.05, 'Least time between progress status messages; a '
                                          'pause in the stream sends the last one at once.',
                             0.0),
    'weight_dir': Param(str, 'weights', 'Local directory of saved layer weights.'),
    'resend_cache_mib': Param(float, 64.0, 'Memory for the activities of recent training '
                                           'batches, sent again unchanged when a batch is '
                                           'resent (0: recompute them).', 0.0),
    'server': Param(str, '', 'Name of the hosting server container (it sets this); sent in '
                             'status messages.'),
    'load_weights': Param(bool, True, 'Reload weights in configure when a saved file exists.'),
    'save_every_batches': Param(int, 0, 'Also checkpoint (save weights, optimiser state and '
                                        'the trained batch ids) every N training batches '
                                        '(0: off).', 0),
    'save_every_s': Param(float, 0.0, 'Also checkpoint at the first batch trained N seconds '
                                      'after the last checkpoint (0: off).', 0.0),
    'device': Param(str, 'cpu', 'Torch device: cpu | cuda | cuda:N.'),
    'chunk_elements': CHUNK_ELEMENTS,
}

SERVER_PARAMETERS = {
    'server_name': Param(str, '', 'Fixed name; empty: claim server_<idx+1> after the others.'),
    'weight_dir': Param(str, 'weights', 'Local directory where hosted layers keep weights.'),
    'device': Param(str, 'cpu', 'Torch device of hosted layers: cpu | cuda | cuda:N.'),
    'torch_threads': Param(int, 0, 'Torch intra-op threads (0: torch default).', 0),
    'executor_threads': Param(int, 1, 'Executor threads shared by the hosted layers (1: '
                                      'single-threaded, measured fastest: training runs on '
                                      "each layer's own compute thread).", 1),
}
# Settings a server hands to its layers unless the creation request sets them.
INHERITED = ('weight_dir', 'device')
assert all(LAYER_PARAMETERS[k].type is SERVER_PARAMETERS[k].type for k in INHERITED)
