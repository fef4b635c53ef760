"""Server name claiming (pure helpers over graph listings) and the ROS name helpers."""
from dff_lifecycle.common.names import (absolute, is_hidden, join, NAMESPACE, node_names,
                                        server_index, server_indices, server_name)
from dff_lifecycle.nodes.server_naming import claim_holds, claims, next_free_index
import pytest

# A graph listing as get_node_names_and_namespaces() returns it: (name, namespace).
GRAPH = [
    ('server_1', '/dff'),
    ('server_3', '/dff'),
    ('master', '/dff'),
    ('server_7', '/elsewhere'),    # not a DFF server: wrong namespace
    ('layer_0', '/mnist_ff'),
    ('_claim_9_00ff', '/other'),   # not a DFF claim: wrong namespace
]


# ------------------------------------------------------------------------ names

def test_join():
    assert join('/', 'a') == '/a'
    assert join('/m', 'layer_0') == '/m/layer_0'
    assert join('/m/', 'layer_0') == '/m/layer_0'
    assert join(NAMESPACE, 'server_1') == '/dff/server_1'


def test_absolute():
    assert absolute('layer_0') == '/layer_0'
    assert absolute('/m/layer_0') == '/m/layer_0'
    assert absolute('m/layer_0') == '/m/layer_0'


@pytest.mark.parametrize('name, hidden', [
    ('_claim_1_ab', True),
    ('/dff/_claim_1_ab', True),
    ('/_private/node', True),
    ('/dff/server_1', False),
    ('/m/layer_0/train_out', False),
    ('node_with_underscores_', False),
    ('', False),
])
def test_is_hidden(name, hidden):
    assert is_hidden(name) is hidden


def test_server_name():
    assert server_name(1) == 'server_1'
    assert server_name(12) == 'server_12'
    for bad in (0, -1):
        with pytest.raises(ValueError):
            server_name(bad)


@pytest.mark.parametrize('name, index', [
    ('server_1', 1),
    ('server_10', 10),
    ('server_123', 123),
    ('server_0', None),     # indices start at 1
    ('server_01', None),    # no leading zeros: one name per index
    ('server_', None),
    ('server_1x', None),
    ('server_-1', None),
    ('xserver_1', None),
    ('server_1 ', None),
    ('Server_1', None),
    ('master', None),
])
def test_server_index(name, index):
    assert server_index(name) == index


def test_server_index_round_trips_server_name():
    for index in (1, 2, 9, 10, 99, 1000):
        assert server_index(server_name(index)) == index


def test_server_indices_count_only_dff_servers_sorted():
    listing = [('server_3', '/dff'), ('server_0', '/dff'), ('server_01', '/dff'),
               *GRAPH, ('server_2', '/dff/sub')]
    assert server_indices(listing) == [1, 3, 3]  # server_3 is listed twice
    assert server_indices([]) == []
    assert server_indices(iter(GRAPH)) == [1, 3]  # any iterable


def test_node_names():
    assert node_names(GRAPH) == {'/dff/server_1', '/dff/server_3', '/dff/master',
                                 '/elsewhere/server_7', '/mnist_ff/layer_0',
                                 '/other/_claim_9_00ff'}
    assert node_names([('talker', '/')]) == {'/talker'}
    assert node_names([]) == set()


# ------------------------------------------------------------------------ claims

def test_claims():
    listing = [*GRAPH, ('_claim_4_0a1b', '/dff'), ('_claim_12_ff', '/dff'),
               ('_claim_0_aa', '/dff'),       # index 0: not a claim
               ('_claim_5_XYZ', '/dff'),      # not a hex token
               ('_claim_6_', '/dff'),
               ('_scan_0a1b', '/dff'),        # the scanner node is no claim
               ('claim_7_aa', '/dff')]
    assert claims(listing) == [(4, '0a1b'), (12, 'ff')]
    assert claims(GRAPH) == []


def test_next_free_index():
    assert next_free_index([]) == 1
    assert next_free_index([('master', '/dff')]) == 1
    assert next_free_index(GRAPH) == 4  # one above the highest, gaps are not reused
    assert next_free_index([*GRAPH, ('_claim_6_ab', '/dff')]) == 7
    assert next_free_index([('_claim_2_ab', '/dff')]) == 3
    assert next_free_index(iter(GRAPH)) == 4


def test_a_lone_claim_holds():
    listing = [*GRAPH, ('_claim_4_abc', '/dff')]
    assert claim_holds(listing, 4, 'abc')
    assert claim_holds(GRAPH, 4, 'abc')  # not yet visible in the graph: nothing against it


def test_a_claim_does_not_hold_once_a_server_has_the_index():
    listing = [*GRAPH, ('_claim_3_abc', '/dff')]
    assert not claim_holds(listing, 3, 'abc')
    assert not claim_holds([('server_4', '/dff'), ('_claim_4_abc', '/dff')], 4, 'abc')


def test_a_server_elsewhere_does_not_take_the_index():
    assert claim_holds([('server_4', '/elsewhere')], 4, 'abc')


def test_racing_claims_the_smaller_token_holds():
    listing = [*GRAPH, ('_claim_4_5e21aa', '/dff'), ('_claim_4_0c77ff', '/dff')]
    assert claim_holds(listing, 4, '0c77ff')
    assert not claim_holds(listing, 4, '5e21aa')
    assert claim_holds(list(reversed(listing)), 4, '0c77ff')  # listing order does not matter


def test_three_racing_claims_only_the_smallest_holds():
    tokens = ['b0', 'a0', 'c0']
    listing = [(f'_claim_2_{t}', '/dff') for t in tokens]
    assert [t for t in tokens if claim_holds(listing, 2, t)] == ['a0']


def test_claims_for_other_indices_or_namespaces_are_no_rivals():
    listing = [('_claim_4_ffff', '/dff'), ('_claim_5_0000', '/dff'),
               ('_claim_4_0000', '/other')]
    assert claim_holds(listing, 4, 'ffff')


def test_the_loser_moves_on_to_the_next_free_index():
    listing = [*GRAPH, ('_claim_4_01', '/dff'), ('_claim_4_02', '/dff')]
    assert not claim_holds(listing, 4, '02')
    retry = next_free_index(listing)
    assert retry == 5
    assert claim_holds([*listing, (f'_claim_{retry}_02', '/dff')], retry, '02')
