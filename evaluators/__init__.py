"""Quality and cost metrics and the multi-objective scorer (installed as ``gansearch.evaluators``).

Evaluators depend on torch only; they never import Optuna or the search layer.
"""
