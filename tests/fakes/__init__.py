"""Test doubles for boundaries we do not own (an OpenAI-compatible server) and in-memory
implementations of our own protocols for pipeline tests."""
