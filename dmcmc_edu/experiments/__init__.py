"""The toolkit's experiments, each built from the core samplers, the models and the metrics.

* :mod:`.ladder` -- the toy NFE-quality sweep (six integrators from noise, two controls, DLG) on a mixture;
* :mod:`.mnist` -- the MNIST rung: shipped models, vanilla and DLG digit sampling, FID-vs-NFE figures;
* :mod:`.demo` -- the 2D demo behind ``make demo``;
* :mod:`.distributed` -- DLG sampling across ``torchrun`` processes, one resumable shard per rank.
"""
