"""The core: errors, the spec, versions, the inventory, the cluster's state, run records and
job declarations. Imports nothing else of the kit (the bottom layer)."""
