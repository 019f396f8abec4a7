"""Helpers shared by the unit tests: a loopback HTTP server and tarball builders."""
