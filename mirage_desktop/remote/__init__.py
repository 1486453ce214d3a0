"""Client of a remote Mirage engine (``mirage --remote URL``): the local camera up as a WebRTC track, the avatar
back as one, into the local outputs; plus the remote's controls. See :mod:`.client` for the protocol."""
