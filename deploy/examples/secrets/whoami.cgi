#!/bin/sh
# Served by busybox httpd as /cgi-bin/whoami: what the task was given (the
# secret only as a hash).
printf 'Content-Type: text/plain\r\n\r\n'
echo "mode: $APP_MODE"
echo "config: $(grep '^listen' /etc/app.conf)"
echo "key: $(sha256sum /run/secrets/api_key | cut -c1-12)"
