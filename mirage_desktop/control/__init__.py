"""Where the animation runs, behind one interface (:class:`.engine_control.EngineControl`): this computer's model
stages (:mod:`.local_engine`) or a remote engine over the network (:mod:`.remote_engine`)."""
