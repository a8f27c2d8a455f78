"""The jobs that ``clusterkit run`` submits. One module per job; see :mod:`clusterkit.jobkit`."""
