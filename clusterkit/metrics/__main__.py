"""``python -m clusterkit.metrics``: see :func:`clusterkit.metrics.sampling.main`."""

from clusterkit.metrics.sampling import main

raise SystemExit(main())
