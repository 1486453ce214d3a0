"""The model stages the engine runs on every frame (face detection, the avatar) and the one list that names them."""
