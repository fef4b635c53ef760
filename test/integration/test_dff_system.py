"""The DFF system across real processes: server containers and the master.

One module-wide isolated ROS domain; every process is real (no mocks).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import re

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.data.datasets import load_dataset
from dff_lifecycle.core.run.experiment import run_single_process
from dff_lifecycle.ros.service_calls import call
from dff_lifecycle.wire.messages import tensor_to_msgs
from dff_lifecycle.wire.qos import STATUS_QOS, TENSOR_QOS
from dff_msgs.msg import LayerStatus, TensorChunk
from dff_msgs.srv import ListLayers
from dff_processes import LAYER_CONFIG, REPO, start_master, start_servers, stop_all
from lifecycle_msgs.msg import State, Transition
import numpy as np
import pytest
from ros_client import ros_client
from ros_env import allocate_domain_id, isolated_ros_env, release_domain_id
import yaml

pytestmark = pytest.mark.integration

SMALL = REPO / 'test' / 'fixtures' / 'mnist_small.yaml'
ACCURACY_RE = re.compile(r'^test accuracy: (\d\.\d+)$', re.M)
# mnist_small (10k samples, 2 epochs of batches of 50, 2 x 256 units) reaches about 0.79.
ACCURACY_FLOOR = 0.70


@pytest.fixture(scope='module')
def env():
    domain = allocate_domain_id()
    saved = dict(os.environ)
    environment = isolated_ros_env(domain)
    os.environ.update(environment)
    try:
        yield environment
    finally:
        os.environ.clear()
        os.environ.update(saved)
        release_domain_id(domain)


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('weights')


@pytest.fixture(scope='module')
def servers(env, weights):
    # Both servers share one weight directory, as machines sharing storage would;
    # it lets a different placement find every layer's weights.
    procs = start_servers(env, [weights, weights], claim=True)  # the suite's claiming test
    try:
        yield procs
    finally:
        stop_all(procs)


def accuracy_of(master) -> float:
    match = ACCURACY_RE.search(master.output)
    assert match, f'no accuracy line in master output:\n{master.output}'
    return float(match.group(1))


def run_master(env, **params):
    master = start_master(env, SMALL, servers=2, **params)
    code = master.wait(240)
    assert code == 0, f'master exited with {code}:\n{master.output}'
    return master


@pytest.fixture(scope='module')
def trained(env, servers, tmp_path_factory):
    """Distributed training of mnist_small; the result other tests build on."""
    out = tmp_path_factory.mktemp('dff_run')
    master = run_master(env, out_dir=str(out))
    return master, out


def test_servers_get_distinct_names(servers):
    assert sorted(p.name for p in servers) == ['server_1', 'server_2']


def test_distributed_training_reaches_accuracy_and_matches_single_process(trained, data_root):
    master, out = trained
    dff_accuracy = accuracy_of(master)
    assert dff_accuracy >= ACCURACY_FLOOR
    text = master.output
    assert 'layer_0' in text and 'server_1' in text and 'server_2' in text  # the plan table
    assert (out / 'metrics.json').is_file() and (out / 'training.png').is_file()
    model = load_model_config(SMALL, load_layer_config(LAYER_CONFIG))
    dataset = load_dataset('mnist', data_root, train_limit=model.training.train_limit,
                           test_limit=model.training.test_limit)
    single = run_single_process(model, dataset, 'cpu', progress=False, log=lambda _t: None)
    assert abs(single['test_accuracy'] - dff_accuracy) <= 0.005


def plan_of(out: Path) -> list[dict]:
    return json.loads((out / 'metrics.json').read_text())['plan']


def test_weights_reload_gives_identical_accuracy(env, trained, weights, tmp_path):
    first = accuracy_of(trained[0])
    files = sorted(p.name for p in (weights / 'mnist_small').iterdir())
    assert files == ['layer_0.pt', 'layer_1.pt']
    assert not any(entry['weights_loaded'] for entry in plan_of(trained[1]))  # a fresh start
    again = run_master(env, command='evaluate', out_dir=str(tmp_path))
    # Each layer said in its status that configure reloaded its saved file.
    assert [entry['weights_loaded'] for entry in plan_of(tmp_path)] == [True, True]
    assert accuracy_of(again) == first
    swapped = run_master(env, command='evaluate', placement='pinned',
                         pins=['0:server_2', '1:server_1'])
    assert re.search(r'^0 .*server_2', swapped.output, re.M)
    assert accuracy_of(swapped) == first


def test_hard_negatives_distributed_match_single_process(env, servers, data_root, tmp_path):
    # Each epoch after the first opens with an inference pass over the training set through
    # the layer nodes; the wrong labels it picks must be those a single process picks.
    raw = yaml.safe_load(SMALL.read_text())
    raw['name'] = 'mnist_hard'
    raw['training'].update(negatives='hard', epochs=3, train_limit=4000)
    config = tmp_path / 'mnist_hard.yaml'
    config.write_text(yaml.safe_dump(raw))
    master = start_master(env, config, servers=2)
    assert master.wait(240) == 0, master.output
    model = load_model_config(config, load_layer_config(LAYER_CONFIG))
    dataset = load_dataset('mnist', data_root, train_limit=4000,
                           test_limit=model.training.test_limit)
    single = run_single_process(model, dataset, 'cpu', progress=False, log=lambda _t: None)
    assert abs(single['test_accuracy'] - accuracy_of(master)) <= 0.005, master.output
    assert 'epoch 3: scoring 4000 training images for hard negatives' in master.output


@pytest.fixture(scope='module')
def deployed(env, servers, trained):
    """Bring the trained model up again and leave it active (teardown off)."""
    run_master(env, command='evaluate', teardown=False)
    with ros_client() as client:
        yield client
        run_master(env, command='delete')


def test_every_layer_active_after_bring_up(deployed):
    for node in ('/mnist_small/layer_0', '/mnist_small/layer_1'):
        assert deployed.lifecycle.get_state(node) == (State.PRIMARY_STATE_ACTIVE, 'active')


def test_servers_list_their_layers(deployed):
    hosted = {}
    for server in ('server_1', 'server_2'):
        client = deployed.clients.get(ListLayers, f'/dff/{server}/list_layers')
        response = call(client, ListLayers.Request(), 10.0)
        hosted.update({layer.node_name: (server, layer.state_label) for layer in response.layers})
    assert hosted == {'/mnist_small/layer_0': ('server_1', 'active'),
                      '/mnist_small/layer_1': ('server_2', 'active')}


def test_lifecycle_through_standard_services(deployed):
    lc, node = deployed.lifecycle, '/mnist_small/layer_1'
    labels = {t.label for t in lc.available_transitions(node)}
    assert {'deactivate', 'shutdown'} <= labels
    assert lc.change_state(node, 'deactivate')                       # by label
    assert lc.get_state(node)[1] == 'inactive'
    assert not lc.change_state(node, 'deactivate')                   # invalid: refused
    assert not lc.change_state(node, Transition.TRANSITION_CLEANUP + 100)
    assert lc.get_state(node)[1] == 'inactive'
    assert lc.change_state(node, Transition.TRANSITION_ACTIVATE)    # by id
    assert lc.get_state(node) == (State.PRIMARY_STATE_ACTIVE, 'active')


def test_malformed_chunk_stream_is_rejected_and_layer_stays_active(deployed):
    node = deployed.node
    statuses = []
    node.create_subscription(LayerStatus, '/mnist_small/layer_0/status', statuses.append,
                             STATUS_QOS)
    pub = node.create_publisher(TensorChunk, '/mnist_small/input/train', TENSOR_QOS)
    deployed.wait_until(lambda: pub.get_subscription_count() >= 1, what='layer_0 subscription')
    good = np.random.default_rng(0).standard_normal((8, 784)).astype(np.float32)
    kwargs = {'model': 'mnist_small', 'stream': 'attack', 'source': '/test', 'batch_seq': 1,
              'kind': TensorChunk.KIND_POSITIVE, 'chunk_elements': 1000}
    corrupted = tensor_to_msgs(good, **kwargs)
    corrupted[2].crc32 ^= 1                          # checksum mismatch on the whole tensor
    for msg in corrupted:
        pub.publish(msg)
    miscounted = tensor_to_msgs(good, **{**kwargs, 'batch_seq': 2})
    miscounted[1].chunk_count += 1                   # inconsistent chunk count
    for msg in miscounted:
        pub.publish(msg)
    wrong_width = np.zeros((4, 10), np.float32)      # well formed, but not 784 features
    for msg in tensor_to_msgs(wrong_width, **{**kwargs, 'batch_seq': 3}):
        pub.publish(msg)
    deployed.wait_until(lambda: statuses and statuses[-1].rejected_tensors >= 3,
                        what='three rejections in the layer status')
    assert statuses[-1].state == 'active'
    assert deployed.lifecycle.get_state('/mnist_small/layer_0')[1] == 'active'
    node.destroy_publisher(pub)


def test_three_containers_started_at_once_get_distinct_names(tmp_path):
    domain = allocate_domain_id()
    environment = isolated_ros_env(domain)
    procs = []
    try:
        from dff_processes import BIN, Proc, ros_args
        procs = [Proc(f's{i}', [str(BIN / 'server_container'),
                                *ros_args({'weight_dir': str(tmp_path / f'w{i}')})], environment)
                 for i in range(3)]
        names = [p.wait_for('server container /dff/server_', 60).split('/dff/')[1].split()[0]
                 for p in procs]
        assert sorted(names) == ['server_1', 'server_2', 'server_3']
    finally:
        stop_all(procs)
        release_domain_id(domain)


def test_status_tool_shows_every_layer_healthy(env, deployed):
    import subprocess

    from dff_processes import BIN
    out = subprocess.run([str(BIN / 'dff_status'), '--model', 'mnist_small', '--wait', '4'],
                         env=env, text=True, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {'/mnist_small/layer_0', '/mnist_small/layer_1'}
    assert all(row[1] == 'active' for row in rows.values())
