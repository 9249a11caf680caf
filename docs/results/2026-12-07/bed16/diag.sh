# diag.sh (bed16): per-transfer counters for the cut-down bench boots.
# diag_snap: one line of the counters that say how many frames went where and what TCP did:
# every interface's rx/tx packets (/proc/net/dev), Tcp OutSegs/InSegs/RetransSegs
# (/proc/net/snmp), TcpExt TCPAutoCorking / TCPOrigDataSent (/proc/net/netstat).
diag_snap() {
    _d=$(awk 'NR>2{gsub(":"," "); printf "%s:rx=%s/%sB,tx=%s/%sB ", $1, $3, $2, $11, $10}' /proc/net/dev)
    _t=$(awk '/^Tcp:/{if(!h){for(i=1;i<=NF;i++)k[i]=$i;h=1}else{for(i=1;i<=NF;i++)if(k[i]~/^(OutSegs|InSegs|RetransSegs)$/)printf "%s=%s ",k[i],$i}}' /proc/net/snmp)
    _x=$(awk '/^TcpExt:/{if(!h){for(i=1;i<=NF;i++)k[i]=$i;h=1}else{for(i=1;i<=NF;i++)if(k[i]~/^(TCPAutoCorking|TCPOrigDataSent|TCPHPHits)$/)printf "%s=%s ",k[i],$i}}' /proc/net/netstat)
    echo "$_d$_t$_x"
}

# diag_trace_start PID FILE: strace every thread of PID into FILE (sets DIAG_ST).
diag_trace_start() {
    DIAG_ST=""
    [ -n "$1" ] && command -v strace >/dev/null || return 0
    strace -f -qq -o "$2" -p "$1" 2>/dev/null &
    DIAG_ST=$!
    sleep 1
}

# diag_trace_stop PID FILE WHAT: stop the trace; log the fds of PID and a count of its
# system calls by name (ioctls by fd and request) from FILE.
diag_trace_stop() {
    [ -n "$DIAG_ST" ] || return 0
    kill "$DIAG_ST" 2>/dev/null
    wait "$DIAG_ST" 2>/dev/null
    bed_log "diag $3 fds: $(ls -l /proc/$1/fd 2>/dev/null | awk '{print $(NF-2)"->"$NF}' | tr '\n' ' ')"
    bed_log "diag $3 syscalls: $(awk '
        / resumed>/ || /^[0-9]+ +(---|\+\+\+)/ { next }
        { s = $0; sub(/^[0-9]+ +/, "", s); n = s; sub(/\(.*/, "", n)
          if (n == "ioctl") { a = s; sub(/^ioctl\(/, "", a); split(a, f, ","); a = substr(a, length(f[1]) + 3); if (match(a, /^_IOC\([^)]*\)/)) r = substr(a, RSTART, RLENGTH); else { r = a; sub(/[,)].*/, "", r) }; n = "ioctl[" f[1] "," r "]" }
          else if (n ~ /^(read|write|readv|writev|epoll_wait|epoll_ctl)$/) { a = s; sub(/^[a-z_]+\(/, "", a); split(a, f, ","); n = n "[" f[1] "]" }
          if (s ~ /= -1 EAGAIN/) n = n "!EAGAIN"
          c[n]++; t++ }
        END { printf "total=%d", t; for (k in c) printf " %s=%d", k, c[k] }' "$2")"
    rm -f "$2"
}
