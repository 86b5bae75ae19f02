-- Lock workflow runs (in id order, so two transactions cannot deadlock on them) and
-- read their state: every change of a run happens under this lock. `runs` is a JSON array
-- of {id, known} objects (one parameter: cheaper to send than two lists), `known` the
-- version of the state this process wrote last and kept (null: none); a run
-- still at that version answers no input, tags or steps (the process has them), so a
-- worker that settles the next step of a run it moved reads and decodes nothing big.
-- Every write of a run bumps its version, and only committed states are kept, so a
-- version names one state. The JSON comes as text: decoded in Python, the step state gives
-- each step's text as well (storage/workflows.py: state_from_fields), which an advance
-- writes again for the steps it leaves alone instead of encoding them.
-- After the runs (locked first: the second part only runs once the first is read), `draw`
-- more rows draw job ids ahead of the insert (add_jobs_drawn), their version NULL: a
-- workflow's advance names its new jobs in the run's step state, so their ids are drawn
-- in the settle's first round trip, and the insert and the run's new state go together
-- with the commit. Ids drawn and not used leave gaps, as a rolled-back insert does.
WITH locked AS (
    SELECT r.id, r.version, r.name, r.status,
           CASE WHEN r.version = k.known THEN NULL ELSE r.input::text END AS input,
           CASE WHEN r.version = k.known THEN NULL ELSE r.tags::text END AS tags,
           CASE WHEN r.version = k.known THEN NULL ELSE r.steps::text END AS steps
    FROM json_to_recordset(%(runs)s::json) AS k(id bigint, known bigint)
    JOIN dqflow_workflow_runs AS r ON r.id = k.id
    ORDER BY r.id
    FOR UPDATE OF r
)
SELECT id, version, name, status, input, tags, steps FROM locked
UNION ALL
SELECT nextval('dqflow_jobs_id_seq'), NULL, NULL, NULL, NULL, NULL, NULL
FROM generate_series(1, %(draw)s::int)
