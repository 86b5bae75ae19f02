-- Cheaper change-feed triggers (0003_change_feed), same rows. Job events fill the feed
-- with one INSERT ... SELECT per statement from the statement's transition table instead
-- of a trigger call and an INSERT per event. A progress or output write still has a row
-- trigger (an UPDATE trigger that names columns cannot see transition tables, and one on
-- every update would tax claims and renewals), now called only for a row whose progress or
-- output changed (its WHEN clause). Whoever appends notifies `dqflow_changes.<schema>`
-- itself, once per statement for events, instead of a statement trigger on every insert
-- into dqflow_job_changes; the 1% chance to prune the feed to its newest ~10000 rows goes
-- with each notification.
DROP TRIGGER dqflow_job_changes_from_event ON dqflow_job_events;
DROP TRIGGER dqflow_job_changes_from_job ON dqflow_jobs;
DROP TRIGGER dqflow_job_changes_notify ON dqflow_job_changes;
DROP FUNCTION dqflow_job_changes_from_event();
DROP FUNCTION dqflow_job_changes_from_job();
DROP FUNCTION dqflow_job_changes_notify();

-- Tell readers of the feed (schema `schema_name`) that rows were appended; now and then
-- drop all but the newest ~10000 rows.
CREATE FUNCTION dqflow_job_changes_appended(schema_name text) RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify(left('dqflow_changes.' || schema_name, 63), '');
    IF random() < 0.01 THEN
        DELETE FROM dqflow_job_changes WHERE id < (SELECT max(id) FROM dqflow_job_changes) - 10000;
    END IF;
END $$;

CREATE FUNCTION dqflow_job_changes_from_events() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    appended bigint;
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, data)
    SELECT job_id, event_type, data FROM inserted_events WHERE event_type <> 'added';
    GET DIAGNOSTICS appended = ROW_COUNT;
    IF appended > 0 THEN
        PERFORM dqflow_job_changes_appended(TG_TABLE_SCHEMA);
    END IF;
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
    PERFORM dqflow_job_changes_appended(TG_TABLE_SCHEMA);
    RETURN NULL;
END $$;

CREATE TRIGGER dqflow_job_changes_from_events AFTER INSERT ON dqflow_job_events
    REFERENCING NEW TABLE AS inserted_events
    FOR EACH STATEMENT EXECUTE FUNCTION dqflow_job_changes_from_events();
CREATE TRIGGER dqflow_job_changes_from_job AFTER UPDATE OF progress, output ON dqflow_jobs
    FOR EACH ROW WHEN (
        NEW.progress IS NOT NULL AND NEW.progress IS DISTINCT FROM OLD.progress
        OR NEW.output IS NOT NULL AND NEW.output::text IS DISTINCT FROM OLD.output::text
    )
    EXECUTE FUNCTION dqflow_job_changes_from_job();
