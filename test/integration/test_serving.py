"""
dff_infer answers dff_image_publisher's images like the offline evaluation, in both modes.

The publisher plays 200 MNIST test images at 30 Hz; the serving node answers every
one on `prediction` with the image's header, and the answers equal the offline
predictions of the same model on the same images: with a local copy of the weights,
and through layer nodes deployed on a server container. Also: the lifecycle (no
autostart: nothing until configure and activate; deactivate pauses), a bad image
is rejected without ending the service, and bad settings end configure with one line.
"""
from __future__ import annotations

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_dataset
from dff_lifecycle.core.ff.network import FFNetwork
from dff_lifecycle.core.run.predictor import LocalPredictor, model_weight_dir
from dff_lifecycle.core.run.weights import load_state
from dff_lifecycle.ros.lifecycle_client import LifecycleClient
from dff_lifecycle.testing.processes import Proc
from dff_processes import BIN, ros_args, start_server, stop_all
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_client import ros_client
from ros_env import isolated_ros_env
from sensor_msgs.msg import Image
from serving_checks import (AGREEMENT, AnswerListener, IMAGES, LAYER_CONFIG, MODEL_CONFIG,
                            train_serving_model)
import torch

pytestmark = pytest.mark.integration
RELIABLE = {'reliability': 'reliable', 'depth': IMAGES}  # the test counts every answer


@pytest.fixture(scope='module')
def trained(tmp_path_factory, data_root):
    """(weights folder, offline answers of the first 200 test images)."""
    return train_serving_model(tmp_path_factory.mktemp('serve'), data_root)


def start_infer(env, **params) -> Proc:
    settings = {'model_config': str(MODEL_CONFIG), **RELIABLE, **params}
    settings = {key: value for key, value in settings.items() if value is not None}
    return Proc('dff_infer', [str(BIN / 'dff_infer'), *ros_args(settings)], env)


def play(env, count: int = IMAGES, subscribers: int = 2) -> Proc:
    settings = {'source': 'mnist', 'count': count, 'rate': 30.0,
                'wait_for_subscribers': subscribers, **RELIABLE}
    return Proc('publisher', [str(BIN / 'dff_image_publisher'), *ros_args(settings)], env)


def serve_and_check(env, trained) -> None:
    _, offline = trained
    with ros_client('_serving_test') as ros:
        listener = AnswerListener(ros.node)
        publisher = play(env)
        try:
            assert publisher.wait(60) == 0, publisher.output
            listener.wait_answers(IMAGES, 30)
        finally:
            stop_all([publisher])
        agreement, answered = listener.agreement(offline)
        assert answered == IMAGES
        assert agreement >= AGREEMENT, agreement
        answer = next(iter(listener.answers.values()))
        assert len(answer.scores) == 10 and answer.class_name == str(answer.class_id)
        assert answer.header.frame_id == 'camera'


def test_local_mode_answers_every_image_like_the_offline_evaluation(ros_domain, trained):
    env = isolated_ros_env(ros_domain)
    infer = start_infer(env, weights=str(trained[0]), autostart=True)
    try:
        infer.wait_for('dff_infer up', 60)
        serve_and_check(env, trained)
    finally:
        assert infer.interrupt() == 0, infer.output


def test_pipeline_mode_answers_through_the_deployed_layers_like_offline(ros_domain, trained,
                                                                        tmp_path):
    env = isolated_ros_env(ros_domain)
    folder = trained[0]  # <out>/weights/mnist_serve: the server's weight_dir is <out>/weights
    server = start_server(env, folder.parent)
    infer = None
    try:
        infer = start_infer(env, weights=str(folder), mode='pipeline', autostart=True)
        infer.wait_for('dff_infer up', 90)
        assert 'pipeline: 2 layer(s) up on server_1' in infer.output
        serve_and_check(env, trained)
    finally:
        if infer is not None:
            assert infer.interrupt() == 0, infer.output
        stop_all([server])
    assert 'deleted model' in server.output  # cleanup tore the layers down


def test_lifecycle_without_autostart_waits_and_deactivate_pauses(ros_domain, trained):
    env = isolated_ros_env(ros_domain)
    infer = start_infer(env, weights=str(trained[0]))
    try:
        infer.wait_for('dff_infer up', 60)
        with ros_client('_serving_lifecycle') as ros:
            lifecycle = LifecycleClient(ros.clients, timeout_s=15.0)
            ros.wait_until(lambda: '/dff_infer' in ros.node_names(), 30, 'dff_infer')
            assert lifecycle.get_state('/dff_infer')[1] == 'unconfigured'
            assert ros.node.count_subscribers('/image') == 0  # nothing before activate
            lifecycle.transition('/dff_infer', 'configure')
            lifecycle.transition('/dff_infer', 'activate')
            ros.wait_until(lambda: ros.node.count_subscribers('/image') == 1, 15, 'subscribed')
            lifecycle.transition('/dff_infer', 'deactivate')
            ros.wait_until(lambda: ros.node.count_subscribers('/image') == 0, 15, 'paused')
            lifecycle.transition('/dff_infer', 'cleanup')
            assert lifecycle.get_state('/dff_infer')[1] == 'unconfigured'
    finally:
        assert infer.interrupt() == 0, infer.output


def test_a_bad_image_is_rejected_and_serving_goes_on(ros_domain, trained):
    env = isolated_ros_env(ros_domain)
    infer = start_infer(env, weights=str(trained[0]), autostart=True)
    try:
        infer.wait_for('dff_infer up', 60)
        with ros_client('_serving_bad') as ros:
            listener = AnswerListener(ros.node)
            pub = ros.node.create_publisher(Image, 'image', QoSProfile(
                depth=10, reliability=ReliabilityPolicy.RELIABLE))
            ros.wait_until(lambda: pub.get_subscription_count() >= 2, 15, 'matched')
            pub.publish(Image(encoding='yuv422', height=2, width=2, step=4, data=bytes(8)))
            good = Image(encoding='mono8', height=28, width=28, step=28)
            good.data.frombytes(bytes(784))
            good.header.stamp.sec = 7
            pub.publish(good)
            listener.wait_answers(1, 15)
            assert list(listener.answers) == [(7, 0)]
        infer.wait_for('image rejected', 10)
    finally:
        assert infer.interrupt() == 0, infer.output


@pytest.mark.parametrize('params, says', [
    ({'weights': '/nonexistent/weights'}, '/nonexistent/weights is not a folder'),
    ({'weights': None, 'mode': 'local'}, 'local mode needs the folder'),  # not given
    ({'mode': 'remote'}, 'mode must be one of local, pipeline'),
    ({'model_config': '/nonexistent.yaml'}, '/nonexistent.yaml'),
])
def test_bad_settings_end_autostart_with_one_line(ros_domain, trained, params, says):
    env = isolated_ros_env(ros_domain)
    infer = start_infer(env, **{'weights': str(trained[0]), 'autostart': True, **params})
    assert infer.wait(60) == 2, infer.output
    errors = [line for line in infer.lines if line.startswith('dff_infer: error:')]
    assert len(errors) == 1 and says in errors[0], infer.output
    assert 'Traceback' not in infer.output


def test_the_publisher_refuses_a_source_it_cannot_play(ros_domain, tmp_path):
    env = isolated_ros_env(ros_domain)
    for source, says in ((str(tmp_path / 'none'), 'neither mnist nor cifar10 nor a folder'),
                         (str(tmp_path), 'holds no image files')):
        proc = Proc('publisher', [str(BIN / 'dff_image_publisher'),
                                  *ros_args({'source': source})], env)
        assert proc.wait(60) == 2, proc.output
        assert says in proc.output and 'Traceback' not in proc.output


def test_a_model_learnt_from_a_stream_is_the_same_batches_trained_offline(ros_domain, tmp_path,
                                                                          data_root):
    """
    dff_learn on 2000 labelled MNIST training images, in order, without replay.

    Reliable with a history of all 2000 on both ends: a learner that falls behind under load
    loses nothing (keep-last 100 lost images when it fell 0.1 s behind at 1 kHz).
    """
    env = isolated_ros_env(ros_domain)
    learn = Proc('dff_learn', [str(BIN / 'dff_learn'), *ros_args({
        'model_config': str(MODEL_CONFIG), 'weights': str(tmp_path / 'learnt'),
        'autostart': True, 'save_every_batches': 0, 'log_every_batches': 10,
        'depth': 2000})], env)
    try:
        learn.wait_for('dff_learn up', 60)
        publisher = Proc('publisher', [str(BIN / 'dff_image_publisher'), *ros_args({
            'source': 'mnist', 'split': 'train', 'labeled': True, 'count': 2000,
            'rate': 1000.0, 'reliability': 'reliable', 'depth': 2000,
            'wait_for_subscribers': 1})], env)
        assert publisher.wait(60) == 0, publisher.output
        learn.wait_for('2000 images, 20 batches', 30)
    finally:
        assert learn.interrupt() == 0, learn.output
    model = load_model_config(MODEL_CONFIG, load_layer_config(LAYER_CONFIG))
    folder = model_weight_dir(tmp_path / 'learnt', model.name)
    dataset = load_dataset('mnist', data_root, train_limit=2000, test_limit=500)
    offline = FFNetwork.from_model_config(model)
    # dff_learn's torch_threads (1): another thread count rounds the products differently,
    # and Adam can grow a last-bit difference past the tolerance in 20 steps (seen once).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, 2000, model.training.batch_size):
            stop = start + model.training.batch_size
            offline.train_batch_classes(dataset.x_train[start:stop], dataset.y_train[start:stop])
    finally:
        torch.set_num_threads(threads)
    for stage, trainer in zip(offline.stages, offline.trainers):
        state = load_state(folder / f'layer_{stage.index}.pt')
        assert state['batches_seen'] == 20
        for name, value in trainer.layer.state_dict().items():
            assert torch.allclose(state['layer'][name], value, atol=1e-5), name
    served = LocalPredictor(model, folder).scores(dataset.x_test).argmax(dim=1)
    assert (served == dataset.y_test).float().mean() > 0.3  # learnt (20 batches: about 0.5)
