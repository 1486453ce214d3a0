"""``mirage doctor``: every part of the setup checked, one verdict per part, each problem with its exact fix.

Qt-free and read-only (nothing the user has is changed: no settings backup, no hash cache, no log file); the CLI
(:mod:`.cli`), the window's Help > System check and the session's start (:func:`.run.gpu_warnings`) run the same
checks. One module per group of checks; :mod:`.check` is the shape they share.
"""
