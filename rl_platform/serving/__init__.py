"""Serving trained policies over HTTP with Ray Serve: batching, a safety shield, A/B tests."""
