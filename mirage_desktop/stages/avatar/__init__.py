"""The avatar stage: LivePortrait driven by the detected face, pasted back into the portrait."""
