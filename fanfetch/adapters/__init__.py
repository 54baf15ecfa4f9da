"""Thin adapters between the ports in ``fanfetch.ports`` and real systems (HTTP, S3, SQS, files).

Each adapter translates its library's errors into ``fanfetch.errors`` at the boundary.
"""
