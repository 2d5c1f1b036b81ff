"""Image files in and out of stores: ``ingest``, ``export`` and ``preview``."""
