"""Console entry points (``rcdml-train``, ``rcdml-eval``); ``launch/`` scripts call these."""
