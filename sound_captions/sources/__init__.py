"""Source readers: user manifests, AudioSet segment lists, strong labels → ClipRequest records."""
