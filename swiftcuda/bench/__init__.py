"""Measuring the engine: the official code restated as a baseline, and the end-to-end FPS benchmark."""
