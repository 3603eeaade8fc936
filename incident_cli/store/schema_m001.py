"""The first schema, kept apart from the later migrations because of its length."""

# The first schema, as m001 has always created it (an applied migration is never edited).
M001_SQL = """
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            title TEXT NOT NULL,
            status TEXT NOT NULL,            -- open | acknowledged | resolved
            severity TEXT NOT NULL,
            rule TEXT NOT NULL,
            handler TEXT NOT NULL,
            source TEXT NOT NULL,
            labels TEXT NOT NULL,            -- JSON object
            annotations TEXT NOT NULL,       -- JSON object
            started_at REAL,                 -- epoch seconds, as are all *_at columns
            opened_at REAL NOT NULL,
            acknowledged_at REAL,
            acknowledged_by TEXT,
            resolved_at REAL,
            resolution TEXT,                 -- auto | recovered | manual | false_positive
            flapping INTEGER NOT NULL DEFAULT 0,
            reopen_count INTEGER NOT NULL DEFAULT 0,
            last_seen_at REAL,
            absent_polls INTEGER NOT NULL DEFAULT 0,
            fixed_at REAL,                   -- a recovery action succeeded
            escalated_at REAL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX incidents_key ON incidents(key, id);
        CREATE INDEX incidents_status ON incidents(status);
        CREATE INDEX incidents_opened ON incidents(opened_at);

        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
            source TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            labels TEXT NOT NULL,
            annotations TEXT NOT NULL,
            state TEXT NOT NULL,             -- firing | suppressed | cleared
            starts_at REAL,
            first_seen_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            cleared_at REAL,
            generator_url TEXT,
            UNIQUE (incident_id, source, fingerprint)
        );

        CREATE TABLE timeline (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            message TEXT NOT NULL,
            data TEXT                        -- JSON or NULL
        );
        CREATE INDEX timeline_incident ON timeline(incident_id, id);
        CREATE INDEX timeline_kind_at ON timeline(kind, at);

        CREATE TABLE actions (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,              -- command | diagnostics | block_ip | escalate
            -- status: pending | running | succeeded | failed | refused | skipped
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            command TEXT,                    -- JSON argv (before substitution)
            params TEXT,                     -- JSON: verify, queries, target, ...
            target TEXT,
            budget_key TEXT,
            exit_code INTEGER,
            output TEXT,
            error TEXT,
            planned_at REAL NOT NULL,
            due_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            lease_until REAL,
            verify_until REAL
        );
        CREATE INDEX actions_due ON actions(status, due_at);
        CREATE INDEX actions_incident ON actions(incident_id);
        CREATE INDEX actions_budget ON actions(budget_key, started_at);

        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            incident_id INTEGER REFERENCES incidents(id) ON DELETE CASCADE,  -- NULL for storm
            channel TEXT NOT NULL,
            -- event: firing | acknowledged | resolved | escalation | storm
            event TEXT NOT NULL,
            status TEXT NOT NULL,            -- pending | sent | dead
            attempts INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL,           -- JSON facts to render; never credentials
            created_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            lease_until REAL,
            lease_token TEXT,
            sent_at REAL,
            error TEXT
        );
        CREATE INDEX notifications_due ON notifications(status, next_attempt_at);
        CREATE INDEX notifications_incident ON notifications(incident_id, channel, id);

        CREATE TABLE channel_refs (
            incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            remote_id TEXT NOT NULL,
            PRIMARY KEY (incident_id, channel)
        );

        CREATE TABLE journeys (
            id INTEGER PRIMARY KEY,
            journey TEXT NOT NULL,
            at REAL NOT NULL,
            ok INTEGER NOT NULL,
            latency_ms REAL,
            origin TEXT NOT NULL             -- file | cli
        );
        CREATE INDEX journeys_by_name ON journeys(journey, at, id);

        CREATE TABLE journey_files (
            path TEXT PRIMARY KEY,
            inode INTEGER,
            size INTEGER,
            offset INTEGER NOT NULL DEFAULT 0,
            head TEXT                        -- first bytes, to notice a replaced file
        );

        CREATE TABLE heartbeats (
            command TEXT PRIMARY KEY,
            last_run_at REAL NOT NULL,
            last_ok_at REAL,
            last_exit INTEGER,
            last_duration REAL,
            last_error TEXT
        );

        CREATE TABLE source_status (
            name TEXT PRIMARY KEY,
            last_checked_at REAL,
            last_ok_at REAL,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            alerts INTEGER
        );
        """
