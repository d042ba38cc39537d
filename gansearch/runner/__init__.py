"""Running a study: Optuna storage, trial recording, the propose-evaluate loop, signals.

* :mod:`~gansearch.runner.storage` opens the study's Optuna storage and knows which trials
  count towards the budget;
* :mod:`~gansearch.runner.recording` writes each candidate into it as one trial;
* :mod:`~gansearch.runner.loop` keeps an engine's slots busy with a strategy's proposals;
* :mod:`~gansearch.runner.signals` makes Ctrl-C land between bookkeeping steps, never
  inside one.

Nothing here builds or scores a generator: the loop sees gene values, an engine and
:class:`~gansearch.candidates.CandidateResult` values. :mod:`gansearch.study` wires these
to a study file.
"""
