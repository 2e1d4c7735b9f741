"""ASR: faster-whisper transcription into words with times, normalized simplified Chinese."""
