#!/bin/sh
# Served by busybox httpd as /cgi-bin/status: asks the database and the cache
# by the names the stack file gives them.
ask() {
  printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 "$1" "$2" | tail -n 1
}
printf 'Content-Type: text/plain\r\n\r\n'
echo "web: $(hostname): $GREETING"
echo "db: $(ask db 5432)"
echo "cache: $(ask cache 6379)"
