-- A fragment, not a statement: the CTE `runs_locked` locks workflow runs (in id order, so
-- two transactions cannot deadlock on them) and reads their state: every change of a run
-- happens under this lock. `runs` is a JSON array of {id, known} objects (one parameter:
-- cheaper to send than two lists), `known` the version of the state this process wrote last
-- and kept (null: none); a run still at that version answers no input, tags or steps (the
-- process has them), so a worker that settles the next step of a run it moved reads and
-- decodes nothing big. Every write of a run bumps its version, and only committed states
-- are kept, so a version names one state. The JSON comes as text: decoded in Python, the
-- step state gives each step's text as well (storage/workflows.py: state_from_fields),
-- which an advance writes again for the steps it leaves alone instead of encoding them.
-- Pasted where a statement says $LOCK_RUNS (workflow_lock_runs.sql, and the step settle's
-- variant of complete_jobs.sql).
runs_locked AS (
    SELECT r.id, r.version, r.name, r.status,
           CASE WHEN r.version = k.known THEN NULL ELSE r.input::text END AS input,
           CASE WHEN r.version = k.known THEN NULL ELSE r.tags::text END AS tags,
           CASE WHEN r.version = k.known THEN NULL ELSE r.steps::text END AS steps
    FROM json_to_recordset(%(runs)s::json) AS k(id bigint, known bigint)
    JOIN dqflow_workflow_runs AS r ON r.id = k.id
    ORDER BY r.id
    FOR UPDATE OF r
)
