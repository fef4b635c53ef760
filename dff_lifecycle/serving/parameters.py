"""Parameter tables of `dff_infer` and `dff_image_publisher` (no torch, no rclpy)."""
from __future__ import annotations

from dff_lifecycle.common.parameter_table import Param

RELIABILITIES = ('best_effort', 'reliable')
MODES = ('local', 'pipeline')

QOS_PARAMETERS = {
    'reliability': Param(str, 'best_effort', 'QoS reliability of the image and prediction '
                                             'topics: best_effort (camera style) | reliable.'),
    'depth': Param(int, 5, 'QoS history depth (keep last).', 1),
}

INFER_PARAMETERS = {
    'model_config': Param(str, None, 'Model config YAML: a path, or params/models/<name>.yaml '
                                     'of the package.'),
    'layer_config': Param(str, 'params/layers.yaml', 'Layer type registry YAML.'),
    'weights': Param(str, '', 'Folder of trained weights: what dff_train --out wrote, or a '
                              "server container's weight_dir (pipeline mode: only read for "
                              'input_stats.json; may be empty).'),
    'mode': Param(str, 'local', 'local: run a copy of the weights here | pipeline: run the '
                                'images through layer nodes deployed on the server containers.'),
    'servers': Param(int, 1, 'Pipeline mode: how many server containers to deploy the '
                             'layers on (their weight_dir holds the trained weights).', 1),
    'discovery_timeout_s': Param(float, 60.0, 'Pipeline mode: how long to wait for the '
                                              'server containers.', 0.1),
    'autostart': Param(bool, False, 'Configure and activate at start (as nav2 lifecycle '
                                    "manager's autostart); false: wait for ros2 lifecycle set."),
    'data_root': Param(str, '', 'Dataset root, read only when the weights folder has no '
                                'input_stats.json (empty: $DFF_DATA_ROOT, else ./data).'),
    'device': Param(str, 'cpu', 'Torch device of the local copy: cpu | cuda | cuda:N.'),
    'torch_threads': Param(int, 1, 'Torch intra-op threads (0: auto, the cores this process '
                                   'may use: its CPU affinity and cgroup CPU quota).', 0),
    **QOS_PARAMETERS,
}

PUBLISHER_PARAMETERS = {
    'source': Param(str, 'mnist', 'What to play: mnist | cifar10 (their test sets, from the '
                                  'data root) | a folder of images (one sub-folder per class, '
                                  'or images directly).'),
    'data_root': Param(str, '', 'Dataset root for mnist and cifar10 (empty: $DFF_DATA_ROOT, '
                                'else ./data).'),
    'rate': Param(float, 30.0, 'Images per second.', 0.001),
    'count': Param(int, 0, 'Images to play (0: all of them).', 0),
    'start': Param(int, 0, 'Index of the first image.', 0),
    'loop': Param(bool, False, 'Start again after the last image; false: exit when done.'),
    'frame_id': Param(str, 'camera', 'header.frame_id of the images.'),
    'labeled': Param(bool, False, 'Publish dff_msgs/LabeledImage (image and class) on '
                                  'labeled_image, for dff_learn, instead of images on image.'),
    'split': Param(str, 'test', 'mnist and cifar10: the test or the train set.'),
    'wait_for_subscribers': Param(int, 0, 'Wait until this many subscribers match before the '
                                          'first image (0: start at once).', 0),
    **QOS_PARAMETERS,
}

LEARN_PARAMETERS = {
    'model_config': INFER_PARAMETERS['model_config'],
    'layer_config': INFER_PARAMETERS['layer_config'],
    'weights': Param(str, None, 'Folder the learnt weights go to, laid out as by dff_train '
                                '--out (<weights>/weights/<model>/); weights already there are '
                                'learnt on from.'),
    'replay_capacity': Param(int, 2000, 'Earlier images kept for replay (0: none).', 0),
    'replay_per_batch': Param(int, 0, 'Replayed images added to each batch of new ones '
                                      '(0: new images only, as dff_train would see them).', 0),
    'save_every_batches': Param(int, 50, 'Save the weights every N batches (0: only at '
                                         'deactivate, cleanup and shutdown).', 0),
    'log_every_batches': Param(int, 50, 'Log the layer losses every N batches.', 1),
    'autostart': INFER_PARAMETERS['autostart'],
    'data_root': INFER_PARAMETERS['data_root'],
    'torch_threads': INFER_PARAMETERS['torch_threads'],
    'reliability': Param(str, 'reliable', 'QoS reliability of labeled_image: reliable (every '
                                          'labelled image is learnt from) | best_effort.'),
    'depth': Param(int, 100, 'QoS history depth (keep last).', 1),
}
