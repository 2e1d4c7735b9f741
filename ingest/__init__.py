"""Ingest: media probing, ffmpeg command building, live recording into copy-codec segments."""
