-- Cheaper change-feed triggers (0003_change_feed), same rows. Job events fill the feed
-- with one INSERT ... SELECT per statement from the statement's transition table instead
-- of a trigger call and an INSERT per event. A progress or output write still has a row
-- trigger (an UPDATE trigger that names columns cannot see transition tables, and one on
-- every update would tax claims and renewals), now called only for a row whose progress or
-- output changed (its WHEN clause), and no longer notifying per row. Notifications on
-- `dqflow_changes.<schema>`: once per event statement that appended rows, and once per
-- statement that writes progress or output (a statement trigger naming those columns),
-- instead of a statement trigger on each of the many one-row inserts into
-- dqflow_job_changes. The feed is still pruned to its newest ~10000 rows, at random: 1% per
-- notification, an event statement's chance multiplied by its rows.
DROP TRIGGER dqflow_job_changes_from_event ON dqflow_job_events;
DROP TRIGGER dqflow_job_changes_from_job ON dqflow_jobs;
DROP TRIGGER dqflow_job_changes_notify ON dqflow_job_changes;
DROP FUNCTION dqflow_job_changes_from_event();
DROP FUNCTION dqflow_job_changes_from_job();
DROP FUNCTION dqflow_job_changes_notify();

-- Drop all but the newest ~10000 rows of the feed (called at random, see above).
CREATE FUNCTION dqflow_job_changes_prune() RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
    DELETE FROM dqflow_job_changes WHERE id < (SELECT max(id) FROM dqflow_job_changes) - 10000
$$;

CREATE FUNCTION dqflow_job_changes_from_events() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    appended bigint;
BEGIN
    INSERT INTO dqflow_job_changes (job_id, kind, data)
    SELECT job_id, event_type, data FROM inserted_events WHERE event_type <> 'added';
    GET DIAGNOSTICS appended = ROW_COUNT;
    IF appended > 0 THEN
        PERFORM pg_notify(left('dqflow_changes.' || TG_TABLE_SCHEMA, 63), '');
        IF random() < 0.01 * appended THEN
            PERFORM dqflow_job_changes_prune();
        END IF;
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
    RETURN NULL;
END $$;

-- Once per statement that writes progress or output, whatever its rows: a notification
-- for nothing new only makes the readers read an empty page.
CREATE FUNCTION dqflow_job_changes_notify() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify(left('dqflow_changes.' || TG_TABLE_SCHEMA, 63), '');
    IF random() < 0.01 THEN
        PERFORM dqflow_job_changes_prune();
    END IF;
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
CREATE TRIGGER dqflow_job_changes_notify AFTER UPDATE OF progress, output ON dqflow_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION dqflow_job_changes_notify();
