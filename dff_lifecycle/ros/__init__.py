"""
rclpy plumbing shared by the nodes, the master and the tools.

The process harness, the rmw environment, blocking service calls, parameter
declaration, lifecycle calls.
"""
