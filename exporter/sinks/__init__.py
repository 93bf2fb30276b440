"""Sinks: where records leave the exporter. Each module is the only importer of its library."""
