"""The local platform: ``kuberec run`` on one machine.

- :mod:`.platform`: observe and execute with ``kfp.local`` runs and BentoML processes.
- :mod:`.store`: the job's ``status.json`` (the local status store), written atomically.
- :mod:`.job_dir`: one owner per job directory (a lock and an identity).
- :mod:`.loop`: reconcile passes until the job settles.
"""
