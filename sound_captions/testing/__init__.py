"""Helpers for tests and demos that ship with the package (generated media, servers)."""
