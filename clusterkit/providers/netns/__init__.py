"""The netns provider: the AWS topology rehearsed on this machine in network namespaces.

Modules: :mod:`.provider` (the provider's verbs), :mod:`.topology` (namespaces, links, routes)
and :mod:`.nodes` (each node's namespaces, root and sshd).
"""
