"""Benchmarks that report ratios measured side by side in one run (never timed tests).

One module per ``gansearch bench`` command, each with one entry function returning a
JSON-able report:

* :mod:`~gansearch.bench.evaluate`: scoring overhead over bare forward passes;
* :mod:`~gansearch.bench.transforms`: do fewer MACs give a faster generator?
* :mod:`~gansearch.bench.supernet`: supernet sub-generators vs magnitude pruning;
* :mod:`~gansearch.bench.search`: joint search vs each single technique;
* :mod:`~gansearch.bench.engines`: local vs Ray throughput and overhead.

The goals they check are data, in ``goals.json`` (:mod:`~gansearch.bench.goals`).
"""
