"""Many subjects: ``cmbdet detect --dataset`` / ``--manifest``.

:mod:`.subject` is one subject's task and its row; :mod:`.folder` the output folder's rules
(what it may hold, what to skip, what to clean); :mod:`.log` ``batch.csv``; :mod:`.run` the
batch (lock, plan, run, log, cohort page) over a runner from :mod:`.local` (this process or
worker processes) or :mod:`.dask` (a Dask cluster).
"""
