"""Recovery: re-planning, checkpoint copies, moving layers, fencing, and the supervisor's part."""
from __future__ import annotations

import io
from pathlib import Path

from dff_lifecycle.common.memory_limit import mib
from dff_lifecycle.core.config import ConfigError, load_layer_config, load_model_config
from dff_lifecycle.core.ff.memory import layer_node_bytes
from dff_lifecycle.master.checkpoints import Checkpoint, CheckpointKeeper
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.heartbeats import EVIDENCE_AGE_S, HeartbeatWatch
from dff_lifecycle.master.pipeline_watch import PipelineWatch
from dff_lifecycle.master.plan import build_plan, move_layers, NoRoom, placement_bytes
from dff_lifecycle.master.recovery import FENCE_TIMEOUT_S, Recovered, Recovery, trained_through
from dff_lifecycle.master.supervisor import Supervisor
from fake_clock import FakeClock
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
LAYERS = load_layer_config(REPO / 'params' / 'layers.yaml')


def model(widths=(8, 8, 8, 8)):
    return load_model_config({'name': 'm', 'dataset': 'mnist', 'supervised': True,
                              'layers': [[-1, 'FFDense', [w]] for w in widths]}, LAYERS)


SERVERS = ['server_1', 'server_2', 'server_3']


# ------------------------------------------------------------------------- re-planning
def test_lost_layers_go_to_the_least_loaded_survivors_and_keep_their_wiring():
    plan = build_plan(model(), SERVERS, 'round_robin')  # s1: 0, 3; s2: 1; s3: 2
    new, moved = move_layers(plan, {'server_1'}, ['server_2', 'server_3'])
    assert [(p.layer.index, p.server) for p in moved] == [(0, 'server_2'), (3, 'server_3')]
    for old, p in zip(plan.placements, new.placements):
        assert (p.full_name, p.topics, p.parameters) == (old.full_name, old.topics,
                                                         old.parameters)
    assert {p.server for p in new.placements} == {'server_2', 'server_3'}


def test_no_survivor_to_move_to_is_a_config_error():
    plan = build_plan(model(), ['server_1'])
    with pytest.raises(ConfigError, match='no surviving server'):
        move_layers(plan, {'server_1'}, [])


def test_a_moved_layer_goes_only_where_it_fits():
    plan = build_plan(model((8, 8, 8, 8)), SERVERS, 'round_robin')  # s1: 0, 3; s2: 1; s3: 2
    need = placement_bytes(plan.placements[0])
    # server_2 is less loaded but has room for one layer only; the second goes to server_3.
    new, moved = move_layers(plan, {'server_1'}, ['server_2', 'server_3'],
                             {'server_2': need + 10, 'server_3': None})
    assert [(p.layer.index, p.server) for p in moved] == [(0, 'server_2'), (3, 'server_3')]
    # The checkpoint a layer is created from counts too.
    _, moved = move_layers(plan, {'server_1'}, ['server_2', 'server_3'],
                           {'server_2': 3 * need, 'server_3': 3 * need},
                           {'/m/layer_0': 2 * need})
    assert [(p.layer.index, p.server) for p in moved] == [(0, 'server_2'), (3, 'server_3')]


def test_a_layer_that_fits_nowhere_is_refused_with_its_need_and_the_rooms():
    plan = build_plan(model((8, 8)), ['server_1', 'server_2'])
    need = placement_bytes(plan.placements[1])
    pattern = rf'/m/layer_1 needs about {mib(need)} .*server_1 {mib(need // 2)}'
    with pytest.raises(NoRoom, match=pattern):
        move_layers(plan, {'server_2'}, ['server_1'], {'server_1': need // 2})


def test_the_layer_need_is_the_one_its_node_checks():
    plan = build_plan(model((500,)), ['server_1'])
    p = plan.placements[0]
    s = p.parameters
    assert placement_bytes(p) == layer_node_bytes(784, 500, 'adam', s['train_rows'],
                                                  s['infer_rows'], 785 * 500, 64.0)


def test_trained_through_is_what_every_restored_layer_trained():
    a = {'trained': [['train_1', 5], ['train_1', 9], ['negatives_2', 3]]}
    b = {'trained': [['train_1', 7], ['junk'], 4]}
    assert trained_through([a, b]) == {'train_1': 7, 'negatives_2': -1}
    assert trained_through([a, None]) == {}  # a layer without a checkpoint: replay all
    assert Recovered({'train_1': 7}).replay_after('train_1') == 7
    assert Recovered({}).replay_after('train_1') == -1
    assert Recovered(None).replay_after('train_1') is None


# ---------------------------------------------------------------------- checkpoint keeper
def test_the_keeper_keeps_the_newest_copy_and_skips_silent_servers():
    logs: list[str] = []
    answers = {'server_1': [Checkpoint('/m/layer_0', 10, b'a')],
               'server_2': RuntimeError('no response')}
    asked = []

    def fetch(server, model_name, held):
        asked.append((server, dict(held)))
        answer = answers[server]
        if isinstance(answer, Exception):
            raise answer
        return answer

    keeper = CheckpointKeeper('m', fetch, lambda: ['server_1', 'server_2'], 1.0, logs.append,
                              clock=FakeClock())
    keeper.pull()
    keeper.pull()
    assert keeper.get('/m/layer_0').data == b'a'
    assert asked[-2] == ('server_1', {'/m/layer_0': 10})  # it says what it holds
    assert len([line for line in logs if 'server_2' in line]) == 1  # said once
    keeper.offer(Checkpoint('/m/layer_0', 5, b'old'))
    assert keeper.get('/m/layer_0').data == b'a'
    # The first copy of each layer is said once (tests and operators wait for it).
    assert [line for line in logs if 'first copy' in line] == [
        'checkpoints: first copy of /m/layer_0 held (10 batches)']


# ----------------------------------------------------------------------------- recovery

class FakeDeployer:

    def __init__(self) -> None:
        self.moved: list[tuple[list[str], dict[str, bytes]]] = []
        self.deleted: list[tuple[str, bool]] = []
        self.refuse: list[str] = []

    def move_in(self, model_name, moved, checkpoints):
        if self.refuse:
            raise PipelineError(self.refuse.pop(0))
        self.moved.append(([f'{p.full_name}@{p.server}' for p in moved], dict(checkpoints)))

    def delete_model(self, model_name, servers, quiet=False, save=True):
        self.deleted += [(s, save) for s in servers]

    answering: set = set()        # servers that answer a probe (slow, not lost)
    graph: set = set()            # node names the master still sees
    rooms: dict = {}              # server -> bytes it may still allocate (missing: unknown)

    def memory_room(self, server, timeout_s):
        return self.rooms.get(server)

    def probe(self, server, timeout_s):
        return server in self.answering

    def present_nodes(self):
        return set(self.graph)

    states: dict = {}             # server -> {node: lifecycle state} it lists (missing: silent)

    def hosted(self, server, model_name, timeout_s):
        return self.states.get(server)


def checkpoint_bytes(trained) -> bytes:
    buffer = io.BytesIO()
    torch.save({'trained': trained}, buffer)
    return buffer.getvalue()


def make_recovery(servers=('server_1', 'server_2'), keeper=None):
    clock = FakeClock()
    plan = build_plan(model((8, 8)), list(servers))
    beats = HeartbeatWatch(servers, lease_s=1.0, clock=clock)
    for s in servers:
        beats.beat(s)
    watch = PipelineWatch({p.full_name: p.layer.index for p in plan.placements})
    deployer = FakeDeployer()
    replanned = []
    recovery = Recovery(plan, servers, deployer, beats, watch, keeper, timeout_s=5.0,
                        on_replan=replanned.append, log=[].append, clock=clock,
                        sleep=clock.sleep)
    return recovery, deployer, beats, clock, replanned


def test_a_lost_servers_layers_move_with_their_checkpoint_copy():
    keeper = CheckpointKeeper('m', lambda *a: [], lambda: [], 0.0)
    keeper.offer(Checkpoint('/m/layer_1', 40, checkpoint_bytes([['train_a', 39]])))
    recovery, deployer, beats, clock, replanned = make_recovery(keeper=keeper)
    clock.now += 2.0
    beats.beat('server_1')  # server_2 fell silent
    result = recovery.recover_servers({'server_2'})
    assert deployer.moved == [(['/m/layer_1@server_1'],
                               {'/m/layer_1': keeper.get('/m/layer_1').data})]
    assert result.replay_after('train_a') == 39
    assert [p.server for p in recovery.plan.placements] == ['server_1', 'server_1']
    assert replanned == [recovery.plan]
    assert recovery.live_servers() == ['server_1'] and recovery.lost == {'server_2'}
    assert recovery.watch.state_of(1) == 'active'
    assert recovery.events[0]['moved'] == {'/m/layer_1': 'server_1'}


def test_a_recovery_that_fits_nowhere_stops_clearly_and_keeps_the_checkpoints(tmp_path):
    keeper = CheckpointKeeper('m', lambda *a: [], lambda: [], 0.0)
    keeper.offer(Checkpoint('/m/layer_1', 40, checkpoint_bytes([['train_a', 39]])))
    recovery, deployer, beats, clock, _ = make_recovery(keeper=keeper)
    recovery.keep_dir = tmp_path / 'checkpoints'
    deployer.rooms = {'server_1': 1 << 20}
    clock.now += 2.0
    beats.beat('server_1')
    with pytest.raises(PipelineError) as caught:
        recovery.recover_servers({'server_2'})
    message = str(caught.value)
    assert '\n' not in message
    assert '/m/layer_1 needs about' in message and 'server_1 1 MiB' in message
    assert str(tmp_path / 'checkpoints') in message
    assert (tmp_path / 'checkpoints' / 'm' / 'layer_1.pt').read_bytes() == \
        keeper.get('/m/layer_1').data
    assert deployer.moved == []  # nothing was created anywhere


def test_a_lost_server_that_beats_again_is_fenced_once():
    recovery, deployer, beats, clock, _ = make_recovery()
    clock.now += 2.0
    beats.beat('server_1')
    recovery.recover_servers({'server_2'})
    assert recovery.fence_returned() == []  # still silent
    beats.beat('server_2')
    assert recovery.fence_returned() == ['server_2']
    assert deployer.deleted == [('server_2', False)]  # its stale copy, not saved
    assert recovery.fence_returned() == []
    assert 'server_2' in recovery.live_servers()


def test_with_no_survivor_it_waits_for_a_respawned_server():
    recovery, deployer, beats, clock, _ = make_recovery(servers=('server_1',))
    clock.now += 2.0

    def respawned(seconds):
        clock.now += seconds
        if clock.now > 103.0:
            beats.beat('server_1')
    recovery.sleep = respawned
    recovery.recover_servers({'server_1'})
    assert deployer.deleted == [('server_1', False)]
    assert deployer.moved[0][0] == ['/m/layer_0@server_1', '/m/layer_1@server_1']


def test_with_no_survivor_and_no_respawn_it_gives_up_clearly():
    recovery, _, _, clock, _ = make_recovery(servers=('server_1',))
    clock.now += 2.0
    with pytest.raises(PipelineError, match='no server container came back within 5 s'):
        recovery.recover_servers({'server_1'})


def test_still_hosted_is_what_each_server_lists_as_active():
    recovery, deployer = make_recovery()[:2]
    placements = list(recovery.plan.placements)
    names = [p.full_name for p in placements]
    deployer.states = {'server_1': {names[0]: 'active'}, 'server_2': {names[1]: 'inactive'}}
    assert recovery.still_hosted(placements) == {names[0]}
    deployer.states = {'server_1': {names[0]: 'active'}}          # server_2 does not answer
    assert recovery.still_hosted(placements) == {names[0]}


def test_a_finalized_layer_is_created_again_once_its_server_removed_it():
    recovery, deployer, _, _, _ = make_recovery()
    deployer.refuse = ['server_2 could not create layers: /m/layer_1 already exists']
    placement = recovery.plan.placements[1]
    result = recovery.recreate([placement])
    assert result.replay_after('train') is None  # shutdown saved all it trained
    assert deployer.moved == [(['/m/layer_1@server_2'], {})]


# ---------------------------------------------------------------------------- supervisor
def test_the_supervisor_recovers_instead_of_stopping_and_returns_the_notice():
    recovery, deployer, beats, clock, _ = make_recovery()
    names = {p.full_name for p in recovery.plan.placements}
    supervisor = Supervisor(recovery.plan.placements, lambda: names, clock=clock,
                            heartbeats=beats, recovery=recovery)
    assert supervisor.check('training') is None
    clock.now += 2.0
    beats.beat('server_1')
    clock.now += EVIDENCE_AGE_S  # server_1's beat after server_2's deadline is evidence now
    notice = supervisor.check('training')
    assert isinstance(notice, Recovered) and deployer.moved
    assert supervisor.check('training') is None  # recovered from: not lost again


def test_without_recovery_a_silent_server_stops_the_run_with_its_layers():
    clock = FakeClock()
    plan = build_plan(model((8, 8)), ['server_1', 'server_2'])
    beats = HeartbeatWatch(['server_1', 'server_2'], clock=clock)
    beats.beat('server_1')
    beats.beat('server_2')
    clock.now += 2.0
    beats.beat('server_1')
    clock.now += EVIDENCE_AGE_S
    supervisor = Supervisor(plan.placements, lambda: set(), clock=clock, heartbeats=beats)
    with pytest.raises(PipelineError, match='server_2 has not answered.*/m/layer_1'):
        supervisor.check('training')


def test_the_keeper_asks_a_server_whose_pulls_are_costly_less_often():
    clock = FakeClock(0.0)
    asked = []

    def fetch(server, model_name, held):
        asked.append((server, clock.now))
        clock.sleep(1.0 if server == 'server_1' else 0.01)  # server_1 sends a wide layer
        return []

    keeper = CheckpointKeeper('m', fetch, lambda: ['server_1', 'server_2'], 1.0,
                              clock=clock)
    for _ in range(12):
        keeper.pull()
        clock.sleep(1.0)
    by = {s: [t for x, t in asked if x == s] for s in ('server_1', 'server_2')}
    first, second = by['server_1']           # its 1 s pull buys 10 s of quiet
    assert second - first >= 10.0
    assert len(by['server_2']) >= 10         # a cheap one keeps the period
    assert keeper.interval_s('server_1') == pytest.approx(10.0)
    keeper.pull(force=True)
    assert asked[-2][0] == 'server_1'        # forced: everyone is asked


# ------------------------------------------------------------- fence before moving
def test_a_lost_server_that_answers_a_call_is_slow_not_lost_and_nothing_moves():
    recovery, deployer, beats, clock, replanned = make_recovery()
    deployer.answering = {'server_2'}
    clock.now += 2.0
    beats.beat('server_1')
    assert recovery.recover_servers({'server_2'}) is None
    assert deployer.moved == [] and replanned == []
    assert recovery.lost == set() and 'server_2' in beats.alive()
    assert recovery.events == [{'false_loss': 'server_2'}]


def test_copies_are_created_only_once_the_lost_layers_left_the_graph():
    recovery, deployer, beats, clock, _ = make_recovery()
    deployer.graph = {'/m/layer_0', '/m/layer_1'}   # the lost participant's lease runs
    left_at = clock.now + 2.5

    def sleep(seconds):
        clock.sleep(seconds)
        if clock.now >= left_at:
            deployer.graph = {'/m/layer_0'}
    recovery.sleep = sleep
    recovery.recover_servers({'server_2'})
    assert deployer.moved and clock.now >= left_at   # not before /m/layer_1 had gone


def test_a_layer_that_never_leaves_the_graph_is_moved_after_the_fence_timeout():
    recovery, deployer, beats, clock, _ = make_recovery()
    deployer.graph = {'/m/layer_1'}
    logs = []
    recovery.log = logs.append

    def sleep(seconds):          # server_1 beats on while the master waits
        clock.sleep(seconds)
        beats.beat('server_1')
    recovery.sleep = sleep
    started = clock.now
    recovery.recover_servers({'server_2'})
    assert deployer.moved
    assert FENCE_TIMEOUT_S <= clock.now - started <= FENCE_TIMEOUT_S + 0.5
    assert any('/m/layer_1' in line and 'still in the ROS graph' in line for line in logs)


def test_a_hung_server_the_middleware_vouches_for_is_not_waited_for():
    recovery, deployer, beats, clock, _ = make_recovery()
    beats.liveliness('server_2', True)               # alive, but its executor is stuck
    deployer.graph = {'/m/layer_1'}
    started = clock.now
    recovery.recover_servers({'server_2'})
    assert deployer.moved and clock.now == started
