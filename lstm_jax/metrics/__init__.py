"""Metrics shared by tasks that are neither data nor models (CTC decoding, error rates)."""
