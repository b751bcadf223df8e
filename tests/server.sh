# tests/server.sh - shell functions the private test servers share
# (tests/sshd.sh, tests/dropbear.sh); sourced, not run.

# Stop the server whose pid is in $1 and remove the file (waits 2.5 s).
server_stop() {
	if [ -f "$1" ]; then
		pid=$(cat "$1")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
		rm -f "$1"
	fi
}

# 0 once the pid file $1 is written and 127.0.0.1:$2 accepts (5 s), else 1.
server_ready() {
	for _ in $(seq 100); do
		if [ -s "$1" ] && (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# A random port for a try.
server_port() {
	echo $(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
}

# The command $2 of script $1 whose server's pid file is $3: "stop" stops
# it and exits, "start" returns, anything else is a usage error.
server_command() {
	case $2 in
	stop) server_stop "$3"; exit 0 ;;
	start) ;;
	*) echo "$1: unknown command $2" >&2; exit 2 ;;
	esac
}
