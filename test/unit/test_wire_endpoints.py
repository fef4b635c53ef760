"""The wire without a network: messages, sender, receiver, torch arrays (dff_lifecycle.wire)."""
from xml.etree import ElementTree

from builtin_interfaces.msg import Time
from dff_lifecycle.ros.environment import (configure_environment, FASTDDS_LOCALHOST_PROFILE,
                                           FASTDDS_PROFILE)
from dff_lifecycle.wire.endpoints import TensorReceiver, TensorSender
from dff_lifecycle.wire.messages import payload_view, tensor_to_msgs
from dff_lifecycle.wire.qos import STATUS_LATCHED_QOS, STATUS_QOS, TENSOR_QOS
from dff_lifecycle.wire.torch_arrays import from_numpy, to_numpy
from dff_msgs.msg import TensorChunk
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
import torch

IDS = {'model': 'm', 'stream': 'train', 'source': 'layer_0', 'batch_seq': 3,
       'kind': TensorChunk.KIND_NEGATIVE}


def tensor(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


class FakeLogger:

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)

    def error(self, text: str) -> None:
        self.warnings.append(f'ERROR {text}')


class FakePublisher:
    topic_name = '/m/fake'

    def __init__(self, activated: bool = True) -> None:
        self.is_activated = activated
        self.sent: list[TensorChunk] = []

    def publish(self, msg: TensorChunk) -> None:
        self.sent.append(msg)


def test_configure_environment_sets_defaults_but_keeps_user_choices():
    across = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'}
    env = configure_environment({**across, 'FASTDDS_BUILTIN_TRANSPORTS': 'SHM'})
    assert env['FASTDDS_BUILTIN_TRANSPORTS'] == 'SHM'
    assert configure_environment(dict(across))['FASTDDS_BUILTIN_TRANSPORTS'] == 'LARGE_DATA'
    assert configure_environment(dict(across))['FASTDDS_DEFAULT_PROFILES_FILE'] == \
        str(FASTDDS_PROFILE)
    own = {'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/my_profile.xml'}
    assert configure_environment(dict(own)) == {
        **own, 'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST', 'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}


def test_localhost_runs_with_the_localhost_profile_and_stays_so_in_children():
    """rmw_fastrtps's LOCALHOST has a 512 KiB segment: the same scope, through our profile."""
    env = configure_environment({})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SYSTEM_DEFAULT'
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == str(FASTDDS_LOCALHOST_PROFILE)
    assert configure_environment(dict(env)) == env  # a child configured again
    assert configure_environment({'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}) == env
    # A device of the emulated cluster inherits the profile but discovers its subnet.
    member = configure_environment({**env, 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
                                    'FASTDDS_BUILTIN_TRANSPORTS': 'UDPv4'})
    assert member['FASTDDS_DEFAULT_PROFILES_FILE'] == str(FASTDDS_PROFILE)
    assert member['FASTDDS_BUILTIN_TRANSPORTS'] == 'UDPv4'


def test_the_localhost_profile_is_rmw_fastrtps_localhost_with_a_larger_segment():
    root = ElementTree.parse(FASTDDS_LOCALHOST_PROFILE).getroot()
    ns = {'d': 'http://www.eprosima.com'}
    shm = root.find(".//d:transport_descriptor[d:type='SHM']", ns)
    assert int(shm.find('d:segment_size', ns).text) >= 16 * 2**20
    rtps = root.find('.//d:participant/d:rtps', ns)
    assert rtps.find('d:useBuiltinTransports', ns).text == 'false'
    peers = [a.text for a in rtps.iterfind('.//d:initialPeersList//d:address', ns)]
    assert peers == ['127.0.0.1']
    assert rtps.find('.//d:metatrafficMulticastLocatorList', ns) is None


def test_qos_profiles():
    assert TENSOR_QOS.history == HistoryPolicy.KEEP_ALL
    assert TENSOR_QOS.reliability == ReliabilityPolicy.RELIABLE
    assert STATUS_QOS.reliability == ReliabilityPolicy.RELIABLE and STATUS_QOS.depth <= 10
    assert STATUS_LATCHED_QOS.durability == DurabilityPolicy.TRANSIENT_LOCAL


def test_tensor_to_msgs_fills_header_and_payload():
    array = tensor((3, 5))
    stamp = Time(sec=4, nanosec=5)
    msgs = tensor_to_msgs(array, chunk_elements=4, stamp=stamp, **IDS)
    assert [m.chunk_index for m in msgs] == [0, 1, 2, 3]
    assert {m.chunk_count for m in msgs} == {4}
    assert [m.offset for m in msgs] == [0, 4, 8, 12]
    assert all(list(m.shape) == [3, 5] and m.stamp == stamp for m in msgs)
    assert all(m.source == 'layer_0' and m.model == 'm' and m.batch_seq == 3 for m in msgs)
    assert np.array_equal(np.concatenate([payload_view(m) for m in msgs]), array.ravel())


def test_payload_view_shares_the_message_buffer():
    msg = tensor_to_msgs(tensor(6), chunk_elements=6, **IDS)[0]
    view = payload_view(msg)
    assert view.dtype == np.float32
    assert view.ctypes.data == msg.payload.data.buffer_info()[0]


def test_sender_and_receiver_round_trip_bit_identical():
    array = tensor((7, 11))
    publisher = FakePublisher()
    assert TensorSender(publisher, source='layer_0', chunk_elements=10).send(
        array, model='m', stream='train', batch_seq=3, kind=TensorChunk.KIND_POSITIVE) == 8
    receiver = TensorReceiver(FakeLogger())
    results = [receiver.on_message(m) for m in reversed(publisher.sent)]
    assert results[:-1] == [None] * 7
    done = results[-1]
    assert (done.model, done.stream, done.source, done.batch_seq, done.kind) == (
        'm', 'train', 'layer_0', 3, TensorChunk.KIND_POSITIVE)
    assert done.array.tobytes() == array.tobytes()
    assert receiver.completed_tensors == 1 and receiver.rejected_tensors == 0


def test_sender_refuses_an_inactive_lifecycle_publisher():
    with pytest.raises(RuntimeError, match='not active'):
        TensorSender(FakePublisher(activated=False), source='x').send(
            tensor(3), model='m', stream='train', batch_seq=0, kind=0)


def test_receiver_counts_and_logs_rejects_without_raising():
    logger = FakeLogger()
    receiver = TensorReceiver(logger)
    msgs = tensor_to_msgs(tensor(8), chunk_elements=4, **IDS)
    msgs[1].payload.data[0] += 1.0
    assert receiver.on_message(msgs[0]) is None
    assert receiver.on_message(msgs[1]) is None
    assert receiver.rejected_tensors == 1
    assert 'CRC-32 mismatch' in logger.warnings[0] and 'm/train#3' in receiver.last_error


def test_receiver_survives_unexpected_errors():
    logger = FakeLogger()
    receiver = TensorReceiver(logger)
    assert receiver.on_message(object()) is None  # not even a TensorChunk
    assert receiver.rejected_tensors == 1
    assert logger.warnings[0].startswith('ERROR unexpected error')


def test_receiver_expires_stale_partial_tensors():
    logger = FakeLogger()
    receiver = TensorReceiver(logger, pending_timeout_s=0.0)
    receiver.on_message(tensor_to_msgs(tensor(8), chunk_elements=4, **IDS)[0])
    assert receiver.expire() == 1
    assert receiver.rejected_tensors == 1 and 'dropped incomplete' in logger.warnings[0]


def test_to_numpy_shares_memory_for_contiguous_float32_cpu():
    source = torch.randn(4, 5, requires_grad=True)
    array = to_numpy(source)
    assert array.dtype == np.float32 and np.shares_memory(array, source.detach().numpy())
    converted = to_numpy(torch.arange(6, dtype=torch.float64).reshape(2, 3).T)
    assert converted.dtype == np.float32 and converted.flags.c_contiguous


def test_from_numpy_shares_writable_buffers_and_copies_read_only_ones():
    array = tensor((2, 3))
    shared = from_numpy(array, 'cpu')
    assert shared.dtype == torch.float32 and shared.data_ptr() == array.ctypes.data
    read_only = np.frombuffer(array.tobytes(), np.float32)
    copied = from_numpy(read_only, torch.device('cpu'))
    assert copied.data_ptr() != read_only.ctypes.data
    assert torch.equal(copied, torch.from_numpy(array.ravel()))
