"""dff_lifecycle and the real `ros2 lifecycle` give the same answers on the same live layers.

One server container hosts the tiny model's two layers and a layer whose configure
fails, all unconfigured; every query runs through both tools, and transitions made
with one are seen by the other.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import subprocess
from typing import Callable

from dff_processes import start_server, stop_all
import pytest
from real_tools import shown, SPIN_TIMES_S
from ros_client import ros_client
from ros_env import isolated_ros_env  # noqa: F401 - fixture
import scenarios

pytestmark = pytest.mark.integration

LAYER, OTHER = scenarios.TINY_LAYERS
BROKEN = scenarios.BROKEN_LAYER
Answer = tuple  # (exit code, stdout, stderr), or some of them


def answer(result: subprocess.CompletedProcess) -> Answer:
    """Exit code, stdout and stderr."""
    return result.returncode, result.stdout, result.stderr


def dff(env: dict[str, str], verb: str, *args: str) -> subprocess.CompletedProcess:
    timeout = '2' if '/no/such_node' in args else '15'  # how long a named node may take
    return scenarios.run_tool(env, 'dff_lifecycle', verb, '--spin-time', '1', '--timeout',
                              timeout, *args)


def ros2_like(env: dict[str, str], ros2_lifecycle, query: tuple[str, ...], ours: Answer,
              key: Callable[[subprocess.CompletedProcess], Answer] = answer
              ) -> subprocess.CompletedProcess:
    """`ros2 lifecycle` with `query`, asked again with longer spin times while it differs."""
    for spin_time_s in SPIN_TIMES_S:
        theirs = ros2_lifecycle(env, *query, spin_time_s=spin_time_s)
        if key(theirs) == ours:
            break
    return theirs


def same_answers(env: dict[str, str], ros2_lifecycle, queries: list[tuple[str, ...]]) -> None:
    """Each query through both tools: same exit code, stdout and stderr.

    Ours one after the other (each waits until the graph is quiet, which other tools
    joining it would delay), then ros2 lifecycle's all at once.
    """
    ours = [dff(env, *query) for query in queries]
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        theirs = list(pool.map(lambda q, o: ros2_like(env, ros2_lifecycle, q, answer(o)),
                               queries, ours))
    for query, mine, real in zip(queries, ours, theirs):
        assert answer(mine) == answer(real), \
            f'{query}:\nours: {shown(mine)}\nros2 lifecycle: {shown(real)}'


def test_nodes_get_list_and_set_answer_like_ros2_lifecycle(ros_domain, tmp_path,
                                                           ros2_lifecycle):
    env = isolated_ros_env(ros_domain)
    server = start_server(env, tmp_path / 'weights', name='server_1')
    try:
        with ros_client('_dff_twin_test') as ros:
            scenarios.create_layers(ros.node)
            same_answers(env, ros2_lifecycle, [
                ('nodes',), ('get',), ('get', LAYER), ('list', LAYER), ('list', LAYER, '-a'),
                ('get', '/no/such_node')])

            # a transition made by one tool is what the other one sees
            # asked again only while it has not discovered the node, so has changed nothing
            result = ros2_like(env, ros2_lifecycle, ('set', LAYER, 'configure'), True,
                               key=lambda result: result.stderr != 'Node not found\n')
            assert answer(result) == (0, 'Transitioning successful\n', ''), shown(result)
            result = dff(env, 'set', LAYER, 'activate')
            assert answer(result) == (0, 'Transitioning successful\n', ''), shown(result)
            same_answers(env, ros2_lifecycle, [
                ('get',), ('list', LAYER), ('set', LAYER, 'configure')])  # not from active

            # a transition the node refuses (its configure fails): the same words. The exit
            # codes differ: ros2 lifecycle 0.36 exits 0 after "Transitioning failed",
            # dff_lifecycle exits 1 (as for its other errors).
            query = ('set', BROKEN, 'configure')
            ours = dff(env, *query)
            theirs = ros2_like(env, ros2_lifecycle, query, (ours.stdout, ours.stderr),
                               key=lambda result: (result.stdout, result.stderr))
            assert (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr) == \
                ('', 'Transitioning failed\n'), f'{shown(ours)}\n{shown(theirs)}'
    finally:
        stop_all([server])
