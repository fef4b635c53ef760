"""dff_infer in both modes, started by launch_ros, answers dff_image_publisher's images.

Twin of test/integration/test_serving.py: a model trained here, one server container
holding its weights, dff_infer with a local copy (on `prediction`) and dff_infer in
pipeline mode through the container (remapped to `prediction_pipeline`), and the
publisher playing 200 MNIST test images at 30 Hz once all four image subscriptions
match (both dff_infer nodes and the test's two listeners). Every
image is answered by both, and at least 99 % of the answers equal the offline
evaluation of the same model on the same images.
"""
import os
from pathlib import Path
import tempfile
import unittest

from launch import LaunchDescription
from launch_ros.actions import LifecycleNode, Node
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from ros_client import ros_client
from ros_env import isolated_ros_env
from serving_checks import (AGREEMENT, AnswerListener, IMAGES, MODEL_CONFIG,
                            train_serving_model)

RELIABLE = {'reliability': 'reliable', 'depth': IMAGES}  # every answer is counted


@pytest.mark.launch_test
def generate_test_description():
    env = isolated_ros_env()
    os.environ.update(env)
    data_root = Path(os.environ.get('DFF_DATA_ROOT', Path(__file__).parents[2].parent
                                    / 'shared' / 'data'))
    folder, offline = train_serving_model(Path(tempfile.mkdtemp(prefix='dff_serve_')),
                                          data_root)
    served = {'model_config': str(MODEL_CONFIG), 'weights': str(folder), 'autostart': True,
              **RELIABLE}
    server = Node(package='dff_lifecycle', executable='server_container', name='server_1',
                  namespace='/dff', output='screen', additional_env=env,
                  parameters=[{'server_name': 'server_1', 'weight_dir': str(folder.parent)}])
    local = LifecycleNode(package='dff_lifecycle', executable='dff_infer', name='dff_infer',
                          namespace='', output='screen', additional_env=env,
                          parameters=[served])
    pipeline = LifecycleNode(package='dff_lifecycle', executable='dff_infer',
                             name='dff_infer_pipeline', namespace='', output='screen',
                             additional_env=env, parameters=[{**served, 'mode': 'pipeline'}],
                             remappings=[('prediction', 'prediction_pipeline')])
    publisher = Node(package='dff_lifecycle', executable='dff_image_publisher',
                     name='dff_image_publisher', output='screen', additional_env=env,
                     parameters=[{'source': 'mnist', 'count': IMAGES, 'rate': 30.0,
                                  'wait_for_subscribers': 4, **RELIABLE}])
    return (LaunchDescription([server, local, pipeline, publisher,
                               launch_testing.actions.ReadyToTest()]),
            {'publisher': publisher, 'offline': offline})


class TestServing(unittest.TestCase):

    def test_both_modes_answer_every_image_like_the_offline_evaluation(self, proc_output,
                                                                       publisher, offline):
        with ros_client('_dff_serving_launch_test') as ros:
            local = AnswerListener(ros.node)
            pipeline = AnswerListener(ros.node, 'prediction_pipeline')
            proc_output.assertWaitFor(f'published {IMAGES} image(s)', process=publisher,
                                      timeout=180, stream='stdout')
            for listener in (local, pipeline):
                listener.wait_answers(IMAGES, 60)
                agreement, answered = listener.agreement(offline)
                self.assertEqual(answered, IMAGES)
                self.assertGreaterEqual(agreement, AGREEMENT)


@launch_testing.post_shutdown_test()
class TestExitCodes(unittest.TestCase):

    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
