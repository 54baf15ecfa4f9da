"""fanfetch: fan out many HTTP downloads, merge them per group, store them in S3 or a folder."""

__version__ = "0.1.0"
__all__ = ["__version__"]
