"""Everything between the kiosk and the machine it runs on: systemd notifications and
watchdog, the journal, the Prometheus textfile and the start-up self-check.

Each module does one job and is wired in by `kiosk.daemon`:

- `notify`    -- `SystemdNotifier`: READY/RELOADING/STOPPING/STATUS/WATCHDOG datagrams.
- `watchdog`  -- `Watchdog`: pings systemd only while the daemon's health checks pass.
- `logs`      -- `setup_logging` and `LogContext`: journal fields, redaction, transcript gate.
- `metrics`   -- `Metrics`: node_exporter textfile with sessions, errors and latencies.
- `selfcheck` -- `run_selfcheck`: devices, gateway reachability and clock at start-up.
"""
