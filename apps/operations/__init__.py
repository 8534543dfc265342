"""The domain: operations and their files, every status change, the queue, the RQ jobs and worker,
and the services the API, the admin, the jobs and the periodic sweeps call."""
