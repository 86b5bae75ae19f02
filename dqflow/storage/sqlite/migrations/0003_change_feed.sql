-- dqflow SQLite 0003: the change feed (storage/changes.py) for live updates: job events
-- (but `added`) and progress and output writes, appended by triggers in the writer's own
-- transaction, so every process's changes are here in commit order (one writer at a time
-- keeps ids in that order). Only the newest ~10000 rows are kept.
CREATE TABLE dqflow_job_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    created_at  REAL    NOT NULL,
    data        TEXT
);
CREATE TRIGGER dqflow_job_changes_event AFTER INSERT ON dqflow_job_events
WHEN new.event_type <> 'added'
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, created_at, data)
    VALUES (new.job_id, new.event_type, new.created_at, new.data);
END;
CREATE TRIGGER dqflow_job_changes_progress AFTER UPDATE OF progress ON dqflow_jobs
WHEN new.progress IS NOT NULL AND new.progress IS NOT old.progress
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, created_at, data)
    VALUES (new.id, 'progress', (julianday('now') - 2440587.5) * 86400.0, json_object('progress', new.progress));
END;
CREATE TRIGGER dqflow_job_changes_output AFTER UPDATE OF output ON dqflow_jobs
WHEN new.output IS NOT NULL AND new.output IS NOT old.output
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, created_at, data)
    VALUES (new.id, 'output', (julianday('now') - 2440587.5) * 86400.0, NULL);
END;
CREATE TRIGGER dqflow_job_changes_trim AFTER INSERT ON dqflow_job_changes
WHEN new.id % 100 = 0
BEGIN
    DELETE FROM dqflow_job_changes WHERE id <= new.id - 10000;
END;
