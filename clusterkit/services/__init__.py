"""What runs on a cluster's nodes: the interface (:mod:`.base`), this machine's processes
(:mod:`.local`, checked first by :mod:`.preflight`), the playbooks (:mod:`.playbooks`), and
the services' health read through their own APIs (:mod:`.health`)."""
