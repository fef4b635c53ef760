"""
Serving a trained model on ROS topics: `dff_infer` and its camera stand-in.

`infer_node.py` answers sensor_msgs/Image with dff_msgs/Prediction (a lifecycle
node), `image_publisher.py` plays a dataset or an image folder onto a topic, and
`parameters.py` declares both nodes' parameters as data. The maths (decoding,
standardising, scoring) is in core: `image_codec`, `input_stats`, `predictor`.
"""
