"""How device requests reach the database: the device process beside the HTTP server, the queue
between them, group commit, long-poll notification and GC tuning.

Only this room knows about processes, sockets and batching; what a request means is decided by
the domain rooms (`devices`, `rollouts`) it calls."""
