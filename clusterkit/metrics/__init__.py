"""Memory and CPU, per node and per run: sampling with psutil (:mod:`.sampling`, also the
node-side command ``python -m clusterkit.metrics``), a run's other nodes sampled through
their runners (:mod:`.peers`), and every node's figures read through runners (:mod:`.nodes`)."""
