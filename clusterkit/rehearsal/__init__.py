"""The two-node rehearsal of the AWS topology in Linux namespaces (``--provider netns``)."""
