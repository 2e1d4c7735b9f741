"""Alerts: detections grouped into alerts, and the hashed evidence each alert carries."""
