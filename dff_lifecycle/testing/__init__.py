"""
Helpers that the test suite and the benchmarks share (no torch).

`processes.Proc`: a child process in its own group, its output read line by line with
arrival times; `waiting.wait_until`: wait for something observable, with a bound, on an
injectable clock. The ROS domain lease both use is `dff_lifecycle.ros.domain_lease`.
"""
