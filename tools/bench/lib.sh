# Helpers the benchmark scripts here share; each sources this after defining its `log`.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_http() { # url: waits up to 30 s for it to answer
  for _ in $(seq 300); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  log "no answer from $1"; return 1
}

field() { # line key -> value of key=value in a berth-load result line
  tr ' ' '\n' <<<"$1" | sed -n "s|^$2=||p" | head -1
}
