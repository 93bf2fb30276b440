"""Transforms between source and sinks: filtering records users do not want."""
