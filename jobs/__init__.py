"""The jobs that ``clusterkit run`` submits. One module per job; see ``jobs/_lib.py``."""
