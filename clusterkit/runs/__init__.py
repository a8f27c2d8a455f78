"""Runs: the store of run records and artifacts (:mod:`.store`: a folder of this machine;
:mod:`.master`: the master's folders read through its runner, with a copy here), starting,
cancelling, waiting for and reaping runs (:mod:`.launcher`), the run supervisor
(:mod:`.supervisor`), reading a run's logs and samples as they grow (:mod:`.tails`) and
comparing finished runs (:mod:`.compare`)."""
