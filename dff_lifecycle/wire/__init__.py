"""
The wire: how a float32 tensor travels between DFF processes, and nothing else.

The bottom of the house: it imports numpy, rclpy and the message types, never the
Forward-Forward core, the nodes or the master. From the bottom up:

- `header`: the one declaration of a chunk's header (`ChunkHeader`: every field of
  `dff_msgs/msg/TensorChunk` except the payload) and of a tensor's identity
  (`TensorKey`), the wire dtype and the default chunk size;
- `chunks`: cut a tensor into chunks and put them back together, with checks
  (tiling, CRC-32, bounded memory); pure numpy;
- `cdr`: a chunk as the bytes rmw_fastrtps writes for a TensorChunk, built and read
  without rclpy, so the hot path publishes and takes serialized messages;
- `messages`: chunks as TensorChunk message objects, for tools and tests;
- `qos`: the QoS profiles of tensors, statuses and heartbeats;
- `endpoints`: `TensorSender` and `TensorReceiver`, the two ends a node holds;
- `torch_arrays`: torch tensors to and from the numpy buffers the wire carries.

The modules are imported by their paths; this package imports none of them, so
`header`, `chunks` and `cdr` stay free of rclpy.
"""
