"""Detectors: rules over speech and on-screen text, price-claim extraction, frame analysis."""
