"""Test doubles that behave like the AWS services where moto is more forgiving (documented shapes and timing)."""
