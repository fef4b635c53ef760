"""Distributed Forward-Forward training on ROS 2 lifecycle nodes."""
