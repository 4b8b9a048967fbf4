"""Source readers: AudioSet segment lists, strong labels, user manifests → ClipRequest records."""
