"""
Parameter tables of the layer node and the server container (no torch, no rclpy).

The layer's hyperparameters are not restated here: they are the fields of
`core.hyperparams.FFHyperParams`, turned into parameters with their defaults
and descriptions. The master's plan fills exactly this table for each layer.
"""
from __future__ import annotations

from dff_lifecycle.common.parameter_table import Param
from dff_lifecycle.core.hyperparams import field_docs
from dff_lifecycle.wire.header import DEFAULT_CHUNK_ELEMENTS

CHUNK_ELEMENTS = Param(int, DEFAULT_CHUNK_ELEMENTS, 'Float32 values per chunk message (1 MiB).', 1)

HYPERPARAMETERS = {name: Param(type(default), default, text, minimum)
                   for name, (default, text, minimum) in field_docs().items()}

LAYER_PARAMETERS = {
    'model': Param(str, None, 'Model this layer belongs to (names the weight file).'),
    'layer_index': Param(int, None, 'Index of the layer in the model config.', 0),
    'layer_type': Param(str, 'FFDense', 'Layer type from the layer registry.'),
    'in_features': Param(int, None, 'Input size (flattened).', 1),
    'out_features': Param(int, None, 'Output size of the layer (flattened, before post_ops).',
                          1),
    'in_shape': Param(str, '', 'Input shape without the batch dim, e.g. "1,28,28"; empty: '
                               '(in_features,).'),
    'layer_args': Param(str, '', 'The layer row\'s integer args, e.g. "32,5,1,2" for an FFConv2d; '
                                 'empty: "<out_features>".'),
    'input_shapes': Param(list, [''], 'Shape of each joined input, in join order (a stage '
                                      'reading a Concat); empty: one input of in_shape.'),
    'concat_dim': Param(int, 1, 'Dimension along which joined inputs are concatenated '
                                '(1: channels).', 1),
    'post_ops': Param(list, [''], 'Parameter-free rows run on the output, in order, each '
                                  '"<Type> <args...>", e.g. "MaxPool2d 2 0".'),
    'pre_ops': Param(list, [''], 'Parameter-free rows run on the joined inputs before the '
                                 'layer (a Flatten after a Concat), like post_ops.'),
    'seed': Param(int, 0, 'Seed of the weight initialisation.', 0),
    'shard_index': Param(int, 0, 'A layer split by output units: which shard this node is '
                                 '(0-based; its units from shard_ranges).', 0),
    'shard_count': Param(int, 1, 'Shards of the split layer (1: the whole layer). Shards '
                                 'exchange partial sums of squares on their partials ports.',
                         1),
    'layer_units': Param(int, 0, 'A split layer: output units (channels) of the whole layer; '
                                 "layer_args name this shard's.", 0),
    'replica_index': Param(int, 0, 'A replicated layer: which replica this node is (0-based); '
                                   'it trains the batches whose seq is this modulo '
                                   'replica_count.', 0),
    'replica_count': Param(int, 1, 'Replicas of the layer (1: not replicated). Replicas '
                                   'exchange weight snapshots on their sync ports and move to '
                                   'the mean.', 1),
    'sync_every': Param(int, 0, "A replicated layer: average the replicas' weights every N "
                                'batches of the training stream (0: at its end only).', 0),
    'stream_batches': Param(int, 0, 'A replicated layer: batches in the training stream, whose '
                                    'last one ends with a final average (0: unknown).', 0),
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
    'inputs': Param(list, None, 'Input port bindings, "<port> <topic> <pkg/msg/Type>" (ports '
                                'train, infer; a stage joining N inputs lists each port N '
                                'times, in join order), from the layer config.'),
    'outputs': Param(list, None, 'Output port bindings (train, infer: activities for the next '
                                 'layers; result: goodness or features for the master; '
                                 'status: LayerStatus), as for inputs.'),
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
    'torch_threads': Param(int, 0, 'Torch intra-op threads (0: auto, the cores this process '
                                   'may use: its CPU affinity and cgroup CPU quota, so a '
                                   '0.4-core device runs one thread, not one spin-waiting '
                                   'thread per visible core).', 0),
    'executor_threads': Param(int, 1, 'Executor threads shared by the hosted layers (1: '
                                      'single-threaded, measured fastest: training runs on '
                                      "each layer's own compute thread).", 1),
    'restart_after_freeze': Param(bool, True, 'Start over as a new DDS participant (same pid '
                                              'and name, hosting nothing) after being frozen '
                                              '(SIGSTOP, a paused VM) past the participant '
                                              'lease, when the master has moved its layers; '
                                              'a returned participant can stay unmatched for '
                                              'tens of seconds.'),
}
# Settings a server hands to its layers unless the creation request sets them.
INHERITED = ('weight_dir', 'device')
assert all(LAYER_PARAMETERS[k].type is SERVER_PARAMETERS[k].type for k in INHERITED)
