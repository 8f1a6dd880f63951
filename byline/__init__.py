"""Byline's command line: the composition root that wires ingest, service and eval together."""
