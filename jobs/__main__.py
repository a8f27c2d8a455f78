"""``python -m jobs NAME --params-json '{...}'``: run one job (:func:`clusterkit.jobkit.main`)."""

from clusterkit.jobkit import main

raise SystemExit(main())
