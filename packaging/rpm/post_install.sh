# sfprocessor %post: directories the unit writes to; systemd is told only when it runs
# (containers and CI have none). Installing never starts the service.
mkdir -p /sock /var/log/sysflow
chmod 0750 /var/log/sysflow
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
