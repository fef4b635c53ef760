"""Tensor transport between two real ROS 2 processes on an isolated domain."""
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
from ros_env import isolated_ros_env  # noqa: F401  (pytest fixture)
from transport_peers import digest, make_tensor

PEERS = Path(__file__).with_name('transport_peers.py')
ELEMENTS = 1 << 20  # 4 MiB float32 tensors
CHUNK_ELEMENTS = 1 << 19  # two chunks per tensor


def run_pair(domain_id: int, topic: str, send_args: list[str], receive_args: list[str],
             timeout_s: float = 25.0) -> tuple[dict, dict]:
    """Start the receiver, wait for READY, run the sender; return both JSON results."""
    env = isolated_ros_env(domain_id)
    common = ['--topic', topic, '--timeout-s', str(timeout_s - 5)]
    receiver = subprocess.Popen([sys.executable, str(PEERS), 'receive', *common, *receive_args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == 'READY', receiver.stderr.read()
        try:
            sender = subprocess.run([sys.executable, str(PEERS), 'send', *common, *send_args],
                                    env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as late:
            receiver.kill()
            said = late.stderr or b''  # bytes here, although the run was text=True
            said = said.decode(errors='replace') if isinstance(said, bytes) else said
            pytest.fail(f'sender still running after {timeout_s} s; its phases:\n{said}\n'
                        f'receiver:\n{receiver.communicate()[1]}')
        assert sender.returncode == 0, sender.stderr
        out, err = receiver.communicate(timeout=timeout_s)
    finally:
        if receiver.poll() is None:
            receiver.kill()
    assert receiver.returncode == 0, err
    return json.loads(sender.stdout.splitlines()[-1]), json.loads(out.splitlines()[-1])


@pytest.mark.timeout(30)
def test_burst_of_large_tensors_reaches_a_slow_subscriber_complete(ros_domain):
    count = 30
    topic = f'/dff_test/burst_{os.getpid()}'
    sent, received = run_pair(
        ros_domain, topic,
        ['--count', str(count), '--elements', str(ELEMENTS),
         '--chunk-elements', str(CHUNK_ELEMENTS)],
        ['--expect', str(count), '--delay-s', '0.1'])
    assert sent['acked']
    # The receiver needs >= 60 x 0.1 s; the sender finished well before, so this
    # was a real backlog that KEEP_ALL had to hold without dropping anything.
    assert sent['publish_s'] < 6.0
    assert [t['batch_seq'] for t in received['tensors']] == list(range(count))
    assert all(t['shape'] == [ELEMENTS] for t in received['tensors'])
    assert [t['sha256'] for t in received['tensors']] == [
        digest(make_tensor(seq, ELEMENTS)) for seq in range(count)]
    assert received['rejected'] == 0


@pytest.mark.timeout(30)
def test_corrupted_chunks_are_rejected_and_the_receiver_keeps_working(ros_domain):
    elements = 1000
    topic = f'/dff_test/corrupt_{os.getpid()}'
    _, received = run_pair(
        ros_domain, topic,
        ['--corrupt', '--elements', str(elements), '--chunk-elements', '400'],
        ['--expect', '2'])
    # transport_peers.corrupted_stream: good, 5 damaged tensors, good.
    assert [t['batch_seq'] for t in received['tensors']] == [0, 6]
    assert received['tensors'][1]['sha256'] == digest(make_tensor(6, elements))
    assert received['rejected'] == 5
    assert received['ignored_chunks'] > 0  # rest of rejected tensors dropped quietly
