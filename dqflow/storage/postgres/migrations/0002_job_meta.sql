-- dqflow 0002: a JSON object of metadata per job (JobRecord.meta), {} by default.
-- A constant default: PostgreSQL 11+ adds the column without rewriting the table.
ALTER TABLE dqflow_jobs ADD COLUMN meta jsonb NOT NULL DEFAULT '{}';
