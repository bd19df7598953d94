"""Multi-stage runs built from the engine: prediction over folders, the demo, (later) rounds."""
