"""Search strategies and execution engines (installed as ``gansearch.search``)."""
