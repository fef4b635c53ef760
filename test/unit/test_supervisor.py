"""Supervision: a layer whose node left the graph ends the run with its name and server."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.master.errors import PipelineError
from dff_lifecycle.master.plan import build_plan
from dff_lifecycle.master.supervisor import Supervisor
from fake_clock import FakeClock
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = load_model_config(REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml',
                          load_layer_config(REPO / 'params' / 'layers.yaml'))


def make(present: set[str], clock: FakeClock) -> Supervisor:
    plan = build_plan(MODEL, ['server_1', 'server_2'])
    return Supervisor(plan.placements, lambda: present, clock=clock, period_s=2.0)


def test_all_present_passes_and_missing_lists_nothing():
    names = {p.full_name for p in build_plan(MODEL, ['server_1', 'server_2']).placements}
    clock = FakeClock()
    supervisor = make(set(names), clock)
    clock.now += 5
    supervisor.check('training')
    assert supervisor.missing() == []


def test_a_missing_layer_is_named_with_its_server():
    plan = build_plan(MODEL, ['server_1', 'server_2'])
    gone = plan.placements[-1]
    present = {p.full_name for p in plan.placements} - {gone.full_name}
    clock = FakeClock()
    supervisor = make(present, clock)
    clock.now += 2.5
    with pytest.raises(PipelineError) as err:
        supervisor.check('training')
    assert gone.full_name in str(err.value) and gone.server in str(err.value)
    assert str(err.value).startswith('training stopped')


def test_the_graph_is_asked_at_most_once_per_period():
    asked = []
    plan = build_plan(MODEL, ['server_1'])
    clock = FakeClock()

    def present() -> set[str]:
        asked.append(clock.now)
        return {p.full_name for p in plan.placements}

    supervisor = Supervisor(plan.placements, present, clock=clock, period_s=2.0)
    for _ in range(50):
        clock.now += 0.1
        supervisor.check('x')
    assert len(asked) == 2  # at 102.0 and 104.0 (5 s in all)


def test_a_silent_server_is_named_with_its_layers_within_the_lease():
    from dff_lifecycle.master.heartbeats import HeartbeatWatch
    clock = FakeClock()
    plan = build_plan(MODEL, ['server_1', 'server_2'])
    watch = HeartbeatWatch(['server_1', 'server_2'], lease_s=1.0, clock=clock)
    names = {p.full_name for p in plan.placements}
    supervisor = Supervisor(plan.placements, lambda: names, clock=clock, heartbeats=watch)
    supervisor.check('training')          # nobody heard yet: not lost (still starting)
    for _ in range(8):                    # both beat every 0.25 s ...
        clock.now += 0.25
        watch.beat('server_1')
        watch.beat('server_2')
    supervisor.check('training')
    for _ in range(5):                    # ... then server_2 falls silent
        clock.now += 0.25
        watch.beat('server_1')
    assert watch.lost() == {'server_2': pytest.approx(1.25)}
    with pytest.raises(PipelineError) as err:
        supervisor.check('training')      # not rate-limited like the graph check
    text = str(err.value)
    assert 'server_2' in text and '/mnist_tiny/layer_1' in text and 'layer_0' not in text
    assert 'dead or hung' in text


def test_beats_of_unknown_servers_are_ignored():
    from dff_lifecycle.master.heartbeats import HeartbeatWatch
    watch = HeartbeatWatch(['server_1'])
    watch.beat('server_9')
    assert watch.heard() == set()


def slow_server_2_gone_from_the_graph(silence: float) -> Supervisor:
    """server_2 beat every 0.9 s (tolerance 1.8 s), its layer left the graph, then `silence`."""
    from dff_lifecycle.master.heartbeats import HeartbeatWatch
    clock = FakeClock()
    plan = build_plan(MODEL, ['server_1', 'server_2'])
    watch = HeartbeatWatch(['server_1', 'server_2'], lease_s=1.0, clock=clock)
    present = {p.full_name for p in plan.placements if p.server == 'server_1'}
    supervisor = Supervisor(plan.placements, lambda: present, clock=clock, period_s=2.0,
                            heartbeats=watch)
    for step in range(1, 61):            # 9 s: server_1 every 0.15 s, server_2 every 0.9 s
        clock.now += 0.15
        watch.beat('server_1')
        if step % 6 == 0:
            watch.beat('server_2')
    clock.now = watch.last_beat('server_2') + silence
    watch.beat('server_1')
    assert watch.lost() == {}            # within server_2's tolerance: the graph decides
    return supervisor


def test_a_layer_gone_from_the_graph_with_its_server_silent_past_the_lease_is_a_lost_server():
    supervisor = slow_server_2_gone_from_the_graph(silence=1.2)
    with pytest.raises(PipelineError, match='server_2 has not answered for 1.2 s.*layer_1'):
        supervisor.check('training')


def test_a_layer_gone_from_the_graph_while_its_server_beats_is_named_as_gone():
    supervisor = slow_server_2_gone_from_the_graph(silence=0.5)
    assert supervisor.check('training') is None  # server_2 may be dying: its lease decides
    supervisor.clock.now += 0.3
    supervisor.heartbeats.beat('server_2')        # it lives: its layer really left the graph
    supervisor.heartbeats.beat('server_1')
    with pytest.raises(PipelineError, match=r'layer_1 \(on server_2\) left the ROS graph'):
        supervisor.check('training')


def test_a_killed_server_whose_layers_leave_the_graph_first_is_a_lost_server():
    """Fast DDS may drop a killed process from the graph before the heartbeat lease ends."""
    supervisor = slow_server_2_gone_from_the_graph(silence=0.3)
    watch = supervisor.heartbeats
    killed_at = watch.last_beat('server_2')
    with pytest.raises(PipelineError) as err:
        for _ in range(30):                       # server_1 beats on, server_2 never again
            assert supervisor.check('training') is None
            supervisor.clock.now += 0.15
            watch.beat('server_1')
    assert 'server_2 has not answered' in str(err.value) and 'layer_1' in str(err.value)
    assert supervisor.clock.now - killed_at < 1.5  # named by the lease, not 4 s later


class RecordingRecovery:
    """The part of Recovery the supervisor uses when nothing is lost but a node left."""

    def __init__(self, plan, hosted=()) -> None:
        self.plan, self.lost, self.recreated = plan, set(), []
        self.hosted, self.asked, self.logged = set(hosted), [], []

    def fence_returned(self) -> list[str]:
        return []

    def log(self, text: str) -> None:
        self.logged.append(text)

    def still_hosted(self, placements):
        self.asked.append([p.full_name for p in placements])
        return {p.full_name for p in placements} & self.hosted

    def recreate(self, placements, why: str = 'finalized'):
        self.recreated.append(([p.full_name for p in placements], why))
        return 'recovered'


def test_a_layer_gone_from_a_living_server_is_created_again_there_with_recovery():
    """A node finalized by hand whose last status never reached the master: CI saw the run end."""
    supervisor = slow_server_2_gone_from_the_graph(silence=0.5)
    supervisor.recovery = RecordingRecovery(build_plan(MODEL, ['server_1', 'server_2']))
    assert supervisor.check('training') is None
    supervisor.clock.now += 0.3
    supervisor.heartbeats.beat('server_2')
    supervisor.heartbeats.beat('server_1')
    assert supervisor.check('training') == 'recovered'
    [(names, why)] = supervisor.recovery.recreated
    assert names == [p.full_name for p in supervisor.placements() if p.server == 'server_2']
    assert 'living server' in why


def test_a_layer_missing_from_the_graph_but_active_on_its_living_server_stays():
    """
    A layer missing from the master's graph while its server hosts it: nothing moves.

    A master stopped past the participant lease drops its peers and matches them again, but
    their graph entries are not sent again: the layers look gone while they train on. The
    server is asked (and announces itself again); nothing is created.
    """
    supervisor = slow_server_2_gone_from_the_graph(silence=0.5)
    layer_1 = [p.full_name for p in supervisor.placements() if p.server == 'server_2']
    supervisor.recovery = RecordingRecovery(build_plan(MODEL, ['server_1', 'server_2']),
                                            hosted=layer_1)
    assert supervisor.check('training') is None
    supervisor.clock.now += 0.3
    supervisor.heartbeats.beat('server_2')
    supervisor.heartbeats.beat('server_1')
    assert supervisor.check('training') is None
    assert supervisor.recovery.asked == [layer_1] and supervisor.recovery.recreated == []
    # still missing at the next graph check: asked again, said once
    supervisor.clock.now += 2.1
    supervisor.heartbeats.beat('server_2')
    supervisor.heartbeats.beat('server_1')
    assert supervisor.check('training') is None
    assert len(supervisor.recovery.asked) == 2 and supervisor.recovery.recreated == []
    assert len([t for t in supervisor.recovery.logged if 'announce' in t]) == 1


def test_after_the_master_itself_was_stopped_silence_counts_from_the_resume():
    """A master stopped 5 s: the servers were unheard meanwhile, through no fault of theirs."""
    from dff_lifecycle.master.heartbeats import HeartbeatWatch
    clock = FakeClock()
    resumed = []
    watch = HeartbeatWatch(['server_1', 'server_2'], lease_s=1.0, clock=clock,
                           resumed_at=lambda: resumed[-1] if resumed else None)
    for server in ('server_1', 'server_2'):
        watch.beat(server)
        watch.liveliness(server, True)
    clock.now += 5.0                        # the master stopped: nothing heard
    resumed.append(clock.now)
    watch.liveliness('server_2', False)     # its DDS dropped server_2 on the resume
    for _ in range(20):                     # 3 s: server_1 beats, server_2 is matched again
        clock.now += 0.15
        watch.beat('server_1')
        assert watch.lost() == {} and 'server_2' not in watch.busy()
        assert watch.silent_for('server_2') < 3.01 and watch.resuming()  # for the graph's rule
    watch.beat('server_2')
    watch.liveliness('server_2', True)
    clock.now += 0.5
    assert watch.lost() == {}
    # past the grace, a server killed is named by the usual rule: about a lease
    clock.now += 4.0
    assert not watch.resuming()
    watch.beat('server_2')
    watch.liveliness('server_2', False)
    for _ in range(9):
        clock.now += 0.15
        watch.beat('server_1')
    assert set(watch.lost()) == {'server_2'}
