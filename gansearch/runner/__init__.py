"""Running a study: Optuna storage, trial recording, the propose-evaluate loop, signals.

* :mod:`~gansearch.runner.storage` opens the study's Optuna storage (RDB or journal file,
  never in memory) and knows which trials count towards the budget;
* :mod:`~gansearch.runner.heartbeat` keeps this controller's trials alive and fails only
  those of dead controllers, so several controllers can share one study;
* :mod:`~gansearch.runner.recording` writes each candidate into it as one trial, created
  RUNNING with exactly its params;
* :mod:`~gansearch.runner.loop` keeps an engine's slots busy with a strategy's proposals;
* :mod:`~gansearch.runner.signals` makes Ctrl-C land between bookkeeping steps, never
  inside one.

Nothing here builds or scores a generator: the loop sees gene values, an engine and
:class:`~gansearch.candidates.CandidateResult` values. :mod:`gansearch.study` wires these
to a study file.
"""
