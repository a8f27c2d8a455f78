"""Acting on nodes: the :class:`~clusterkit.exec.runner.CommandRunner` interface, this
machine's runner (:mod:`.local`), the SSH runner (:mod:`.ssh`, the one place SSH is opened)
and this machine's processes (:mod:`.processes`)."""
