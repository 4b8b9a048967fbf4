"""Test helpers that ship with the package (generated media, loopback servers)."""
