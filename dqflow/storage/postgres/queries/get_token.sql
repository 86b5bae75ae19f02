SELECT * FROM dqflow_tokens WHERE id = %(token_id)s
