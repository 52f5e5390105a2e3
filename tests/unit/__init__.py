"""Unit tests: fast, in-process, no network beyond loopback fakes."""
