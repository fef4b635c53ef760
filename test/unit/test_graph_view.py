"""The graph model behind dff_graph: filtering like rqt_graph, text, DOT and layout."""
from __future__ import annotations

from dff_lifecycle.cli.graph_view import (Endpoint, format_text, layered_layout, namespace_of,
                                          RosGraph, to_dot, Topic)
from dff_lifecycle.common.names import is_hidden

R = 'RELIABLE, VOLATILE'


def graph() -> RosGraph:
    ep = Endpoint
    return RosGraph.build(
        nodes=['/m/layer_1', '/dff/master', '/m/layer_0', '/_dff_graph_1', '/dff/_claim_1_ab'],
        topics=[
            Topic('/m/layer_0/train_out', ('dff_msgs/msg/TensorChunk',),
                  (ep('/m/layer_0', R),), (ep('/m/layer_1', R),)),
            Topic('/m/input/train', ('dff_msgs/msg/TensorChunk',),
                  (ep('/dff/master', R), ep('/dff/master', R)), (ep('/m/layer_0', R),)),
            Topic('/rosout', ('rcl_interfaces/msg/Log',), (ep('/m/layer_0', R),), ()),
            Topic('/_hidden_topic', ('std_msgs/msg/Empty',), (ep('/m/layer_0', R),), ()),
            Topic('/only_hidden', ('std_msgs/msg/Empty',), (ep('/_dff_graph_1', R),), ()),
            # a cycle: layer_1 feeds back into layer_0
            Topic('/m/feedback', ('std_msgs/msg/Empty',), (ep('/m/layer_1', R),),
                  (ep('/m/layer_0', R),)),
        ])


def test_hidden_names():
    assert is_hidden('/_dff_graph_1') and is_hidden('/dff/_claim_1_ab') and is_hidden('/_x/y')
    assert not is_hidden('/dff/server_1') and not is_hidden('/m/layer_0/train_out')


def test_visible_drops_hidden_and_debug_like_rqt_graph():
    shown = graph().visible()
    assert shown.nodes == ('/dff/master', '/m/layer_0', '/m/layer_1')
    assert [t.name for t in shown.topics] == ['/m/feedback', '/m/input/train',
                                              '/m/layer_0/train_out']
    everything = graph().visible(include_hidden=True, include_debug=True)
    assert '/_dff_graph_1' in everything.nodes
    assert {'/rosout', '/_hidden_topic', '/only_hidden'} <= {t.name for t in everything.topics}


def test_text_lists_endpoints_with_qos_once():
    text = format_text(graph().visible())
    assert text.startswith('nodes (3):\n  /dff/master\n  /m/layer_0\n  /m/layer_1\ntopics (3):')
    assert ('  /m/input/train [dff_msgs/msg/TensorChunk]\n    publishers:\n'
            f'      /dff/master  {R}\n    subscribers:\n      /m/layer_0  {R}') in text
    assert text.count('/dff/master  ') == 1


def test_dot_has_namespace_clusters_shapes_and_edges():
    dot = to_dot(graph().visible())
    assert dot.startswith('digraph ros_graph {') and dot.endswith('}\n')
    assert 'label="/dff";' in dot and 'label="/m";' in dot
    assert '"n:/m/layer_0" [label="/m/layer_0", shape=ellipse];' in dot
    assert '"t:/m/layer_0/train_out" [label="/m/layer_0/train_out\\ndff_msgs/msg/TensorChunk", ' \
           'shape=box];' in dot
    assert '"n:/dff/master" -> "t:/m/input/train";' in dot
    assert '"t:/m/layer_0/train_out" -> "n:/m/layer_1";' in dot
    assert '_dff_graph' not in dot and 'rosout' not in dot


def test_layout_puts_publishers_left_of_topics_left_of_subscribers():
    layout = layered_layout(graph().visible())
    column = {v: c for v, (c, _) in layout.items()}
    assert column['n:/dff/master'] == 0
    assert column['t:/m/input/train'] == 1
    assert column['n:/m/layer_0'] == 2  # the feedback edge closing the cycle is ignored
    assert column['t:/m/layer_0/train_out'] == 3
    assert column['n:/m/layer_1'] == 4
    rows = [r for c, r in layout.values() if c == 2]
    assert len(rows) == len(set(rows))


def test_namespace_of():
    assert namespace_of('/m/layer_0/status') == '/m'
    assert namespace_of('/rosout') == '/'
