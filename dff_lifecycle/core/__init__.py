"""Pure PyTorch Forward-Forward core: no ROS imports here."""
