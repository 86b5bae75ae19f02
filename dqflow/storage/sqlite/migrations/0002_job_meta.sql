-- dqflow SQLite 0002: a JSON object of metadata per job (JobRecord.meta), {} by default.
ALTER TABLE dqflow_jobs ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
