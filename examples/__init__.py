"""The dqflow example project: handlers for the job types declared in ``jobs.yaml``."""
