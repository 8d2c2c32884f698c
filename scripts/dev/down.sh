# shellcheck shell=bash
# `./kiln-dev down`: stop what kiln-dev started. RabbitMQ and MariaDB belong to the machine
# (they run before any session starts), so they stay up; caches and .kiln/ stay too.

register_subcommand down "stop the Kiln services, the dockerd and registry kiln-dev started (keeps caches and data)"

stop_from_pidfile() { # name pidfile
  local name=$1 pidfile=$2 pid
  if ! pid_alive "$pidfile"; then
    step "$name: not started by kiln-dev (or already stopped)"
    rm -f "$pidfile"
    return 0
  fi
  pid=$(cat "$pidfile")
  step "stopping $name (pid $pid)"
  kill -TERM "$pid"
  if ! wait_until 30 "$name to stop" bash -c "! kill -0 $pid"; then
    warn "$name did not stop within 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_down() {
  stop_stack
  with_state_lock stop_from_pidfile registry "$REGISTRY_PIDFILE"
  # dockerd stops its containers on the way down.
  with_state_lock stop_from_pidfile dockerd "$DOCKERD_PIDFILE"
}
