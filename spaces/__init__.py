"""The joint compression search space (installed as ``gansearch.spaces``)."""
