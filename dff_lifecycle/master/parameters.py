"""The master's parameter table and the names it accepts (no torch, no rclpy)."""
from __future__ import annotations

from dff_lifecycle.common.names import join, NAMESPACE
from dff_lifecycle.common.parameter_table import Param
from dff_lifecycle.nodes.parameters import CHUNK_ELEMENTS

COMMANDS = ('run', 'train', 'evaluate', 'plan', 'bringup', 'reset', 'save', 'delete', 'serve')
# The action `command:=serve` offers (dff_msgs/action/Train), beside the servers' services.
TRAIN_ACTION = join(NAMESPACE, 'train')
PLACEMENTS = ('contiguous', 'round_robin', 'pinned', 'balanced')

MASTER_PARAMETERS = {
    'command': Param(str, 'run', ' | '.join(('run (train + evaluate)', *COMMANDS[1:-1],
                                             f'serve (offer the {TRAIN_ACTION} action)'))),
    'model_config': Param(str, None, 'Model configuration YAML (YOLOv5-style rows).'),
    'layer_config': Param(str, None, 'Layer configuration YAML (ports and message types).'),
    'data_root': Param(str, '', 'Dataset root; empty: $DFF_DATA_ROOT, else ./data.'),
    'download': Param(bool, False, 'Fetch a dataset missing from the root with torchvision '
                                   '(from $DFF_DATA_MIRROR if set) and md5-verify it.'),
    'servers': Param(int, 1, 'Number of server containers to wait for.', 1),
    'placement': Param(str, 'contiguous', ' | '.join(PLACEMENTS)),
    'pins': Param(list, [''], 'Pinned layers as "<layer>:<server>", e.g. "0:server_2".'),
    'shards': Param(list, [''], 'Layers split by output units across devices, as '
                                '"<layer>:<shards>", e.g. "1:4": each shard on its own server '
                                'holds 1/N of the weights; the shards exchange one partial '
                                'goodness per sample. Needs bundle 0 or 1 (sent as 1).'),
    'replicas': Param(list, [''], 'Layers replicated across devices, as "<layer>:<copies>", '
                                  'e.g. "2:2": copy k trains the batches whose seq is k modulo '
                                  'the copies (a bottleneck stage at 1/N of the work); their '
                                  'weights are averaged every sync_every batches and at the '
                                  'end. Sends one batch per message (bundle 1).'),
    'sync_every': Param(int, 100, 'Replicated layers: batches of the stream between two '
                                  'weight averages (0: at the end only). An average sends and '
                                  'receives the whole layer: on 0.4-core devices every 20 '
                                  'batches cost a third of the gain.', 0),
    'stage_costs': Param(list, [''], 'placement balanced: seconds per training batch of each '
                                     'layer node (stage), in order, e.g. measured on a device '
                                     'with benchmarks/stage_costs.py; empty: the master '
                                     'measures them on its own CPU.'),
    'parallel_bringup': Param(bool, True, 'Configure (then activate) all layers at once; false: '
                                          'one after the other.'),
    'window': Param(int, 16, 'Batches in flight in the pipeline.', 1),
    'torch_threads': Param(int, 1, "Torch intra-op threads of the master's batch building "
                                   'and scoring (0: auto, the cores this process may use: its '
                                   'CPU affinity and cgroup CPU quota; torch itself would '
                                   'spin-wait on every core beside the layers).', 0),
    'bundle': Param(int, 0, 'Training batches per message: 0 sizes bundles from the measured '
                            'pace (at most 64; one per message until measured), 1 sends each '
                            'batch alone, N always N.', 0),
    'epochs': Param(int, 0, 'Override training.epochs (0: keep the config).', 0),
    'load_weights': Param(bool, True, 'Layers reload saved weights in configure (false: '
                                      'start from the seeded initialisation).'),
    'save_every_batches': Param(int, 100, 'Layers also checkpoint every N training batches '
                                          '(0: only on cleanup / shutdown / save).', 0),
    'save_every_s': Param(float, 1.0, 'Layers also checkpoint every N seconds of training '
                                      '(0: off).', 0.0),
    'recovery': Param(bool, True, 'When a server container dies or hangs, move its layers to '
                                  'the surviving (or a respawned) container and carry on; '
                                  'false: stop with the names of its layers.'),
    'checkpoint_pull_s': Param(float, 1.0, "How often the master pulls the layers' newest "
                                           'checkpoints over ROS, for moving a layer off a lost '
                                           'device (0: never; a moved layer then restarts from '
                                           "its new server's disk, or from scratch).", 0.0),
    'replay_mib': Param(float, 128.0, 'Memory for recently completed training batches, resent '
                                      'after a recovery to the layers restored from an older '
                                      'checkpoint (0: only batches in flight).', 0.0),
    'recovery_timeout_s': Param(float, 120.0, 'With no surviving server: how long to wait for a '
                                              'respawned one.', 0.1),
    'chunk_elements': CHUNK_ELEMENTS,
    'service_timeout_s': Param(float, 30.0, 'Timeout of each service call.', 0.1),
    'discovery_timeout_s': Param(float, 60.0, 'How long to wait for servers and topics.', 0.1),
    'batch_timeout_s': Param(float, 20.0, 'No progress for this long: resend or report.', 0.1),
    'pause_timeout_s': Param(float, 600.0, 'How long to wait for a paused layer.', 0.0),
    'heartbeats': Param(bool, True, 'Stop with the names of its layers when a server container '
                                    'is gone (its DDS liveliness lost and no beat for 1 s: '
                                    'dead, frozen or cut off) or hung.'),
    'hang_timeout_s': Param(float, 60.0, 'A server whose process the middleware still vouches '
                                         'for (DDS liveliness) but whose executor made no '
                                         'progress for this long is judged hung and its layers '
                                         'move; silence alone is only "busy". Also how '
                                         'long a layer that says it is still computing a '
                                         'batch counts as progress.', 4.0),
    'max_resends': Param(int, 3, 'Resends of stalled batches before giving up.', 0),
    'teardown': Param(bool, True, 'Deactivate, clean up and delete the layers at the end.'),
    'out_dir': Param(str, '', 'Where metrics.json and training.png go; empty: none.'),
    'device': Param(str, 'cpu', 'Torch device of the classifier head.'),
    'progress': Param(bool, True, 'Show progress bars.'),
}
