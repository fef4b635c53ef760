"""
Facts every part agrees on, importing neither torch nor rclpy.

Names and namespaces, the parameter-table type, the package's own files and
plain-text tables: the launcher, the nodes, the master and the tools all read
them from here, so none of them restates another's.
"""
