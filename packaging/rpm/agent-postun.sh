# mpanel-agent %postun ($1: 0 = erase, >= 1 = upgrade). Configuration (%config(noreplace)) and
# the state in /var/lib/mpanel-agent are kept on erase; RPM has no purge, so remove that
# directory by hand to forget the enrollment.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        # Upgrade: restart only a running agent.
        systemctl try-restart mpanel-agent.service >/dev/null 2>&1 || :
    fi
fi
exit 0
