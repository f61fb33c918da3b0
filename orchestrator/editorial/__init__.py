"""Editorial hand-off: the cut as timelines for Premiere, Resolve, Final Cut and Avid, the reel, and conform.

Modules: ``cut`` (the ``Cut`` value and ``build_cut``, the one place selects are decided), ``media`` (lengths from
the files, held-board stills), ``timeline`` (the OpenTimelineIO timeline), ``export`` (formats), ``since`` (what
changed since an earlier hand-off), ``reel`` (the H.264 reel), ``conform`` (reading an editor's timeline back).
OpenTimelineIO and PyAV are imported only when a function needs them. See docs/editorial.md.
"""
