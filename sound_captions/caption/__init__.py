"""Caption: video library → per-second scores → smoothed cues → WebVTT."""
