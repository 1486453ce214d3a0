"""The Mirage Microphone: the real microphone delayed by the video's own delay, played into a virtual microphone."""
