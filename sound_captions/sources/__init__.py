"""Where labelled clips come from: user manifests, AudioSet segment lists, strong labels."""
