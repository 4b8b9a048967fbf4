"""sound-captions: per-second sound captions (WebVTT) for video libraries.

The package is laid out after the stages of the flow in ARCHITECTURE.md:
sources → download → audio (decode) → features → dataset (shards) → train → bundle → caption.
"""

__version__ = "0.1.0"
