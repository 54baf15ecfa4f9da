"""The pure core of fanfetch: manifests, planning, merging and the message schema.

Nothing here imports boto3, requests or os (``tests/core/test_purity.py`` enforces it), so every
rule about *what* to do is testable without I/O; adapters decide *how*.
"""
