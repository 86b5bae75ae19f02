-- The change feed (dqflow/storage/changes.py): job events (but `added`) and progress and
-- output writes, appended by triggers in the writer's own transaction. Ids come from a
-- sequence in insert order; a reader stops at a gap (a row still being committed) until
-- it fills or is old enough to be a rolled-back insert (postgres/changes.py). Only the
-- newest ~10000 rows are kept. Each insert statement notifies `dqflow_changes.<schema>`
-- (empty payload: one notification per transaction).
CREATE TABLE dqflow_job_changes (
    id          bigserial   PRIMARY KEY,
    job_id      bigint      NOT NULL,
    kind        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    data        jsonb
);

-- Trigger functions run with the search_path they were created with (this schema), so
-- their table names resolve for writers whose own search_path does not include it.
CREATE FUNCTION dqflow_job_changes_from_event() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, data) VALUES (NEW.job_id, NEW.event_type, NEW.data);
    RETURN NULL;
END $$;

CREATE FUNCTION dqflow_job_changes_from_job() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.progress IS NOT NULL AND NEW.progress IS DISTINCT FROM OLD.progress THEN
        INSERT INTO dqflow_job_changes (job_id, kind, data)
        VALUES (NEW.id, 'progress', jsonb_build_object('progress', NEW.progress));
    END IF;
    IF NEW.output IS NOT NULL AND NEW.output::text IS DISTINCT FROM OLD.output::text THEN
        INSERT INTO dqflow_job_changes (job_id, kind) VALUES (NEW.id, 'output');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION dqflow_job_changes_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify(left('dqflow_changes.' || TG_TABLE_SCHEMA, 63), '');
    IF random() < 0.01 THEN
        DELETE FROM dqflow_job_changes WHERE id < (SELECT max(id) FROM dqflow_job_changes) - 10000;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER dqflow_job_changes_from_event AFTER INSERT ON dqflow_job_events
    FOR EACH ROW WHEN (NEW.event_type <> 'added') EXECUTE FUNCTION dqflow_job_changes_from_event();
CREATE TRIGGER dqflow_job_changes_from_job AFTER UPDATE OF progress, output ON dqflow_jobs
    FOR EACH ROW EXECUTE FUNCTION dqflow_job_changes_from_job();
CREATE TRIGGER dqflow_job_changes_notify AFTER INSERT ON dqflow_job_changes
    FOR EACH STATEMENT EXECUTE FUNCTION dqflow_job_changes_notify();
